"""Cross-validation over the folds recorded in prepared shards (ESC-50's five folds,
UrbanSound8K's ten).

``zorro prepare esc50`` / ``urbansound8k`` keep each clip's ``fold`` in its sample meta and in
the shard indexes. :func:`run_cross_validation` trains one model per fold value ``k`` on the
samples of every other fold and evaluates it on fold ``k`` with the dataset's protocol
(:mod:`zorro.protocols`), then reports the mean and standard deviation of the protocol's
headline metric over the folds (:func:`zorro.metrics.fold_summary`). The dataset -- and so
the protocol, the fold field and the headline metric -- comes from ``data.eval_protocol``
or else from the folder itself (``dataset.json``'s ``extra.dataset``), read in the dataset
registry (:mod:`zorro.data.registry`). Each fold is an ordinary run folder ``OUT/fold{k}``
(resumable like any run); a fold whose run folder already holds its final metrics is not
trained again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset, Subset

from zorro.data import LabelVocab, registry
from zorro.data.sample_meta import index_meta_field, sample_metadata, select_samples
from zorro.data.shards.format import read_dataset_json
from zorro.metrics import fold_summary
from zorro.train import TrainConfig, Trainer
from zorro.train.build import build_shard_dataset

logger = logging.getLogger(__name__)

__all__ = ["run_cross_validation", "FoldSubset"]


class FoldSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that passes ``set_epoch`` on (so augmentation draws
    change every epoch) and exposes the dataset's ``vocab``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))
        self.vocab = getattr(dataset, "vocab", None)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def fold_values(folder: str, field: str, info: dict[str, Any] | None = None) -> list[Any]:
    """The value of annotation field ``field`` of every sample of a prepared folder, in
    sample order: from the shard indexes when they carry it (``zorro prepare`` stores a
    dataset's fold there), else from each sample's JSON (None where a sample lacks it)."""
    values = index_meta_field(folder, field, info)
    if values is not None:
        return values
    logger.info("%s: the shard indexes do not carry %r: reading it from every sample (slower)", folder, field)
    samples, _ = sample_metadata(folder)
    return [(s.get("meta") or {}).get(field) for s in samples]


def run_cross_validation(
    cfg: TrainConfig, *, shards: str | None = None, field: str | None = None, folds: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Train and evaluate one model per fold; write ``OUT/cv_metrics.json``.

    Args:
        cfg: a supervised config; ``data.eval_protocol`` names the dataset whose protocol is
            used (default: the dataset the folder was prepared from); ``run.out_dir`` is the
            parent of the fold run folders.
        shards: the prepared folder holding every fold (default ``cfg.data.train_shards``).
        field: the sample-meta field holding the fold (default: the dataset's, ``fold``).
        folds: the fold values to hold out, in order (default: every value found, sorted).

    Returns:
        ``{"protocol", "field", "metric", "summary": {"mean", "std", "folds", "num_folds"},
        "per_fold": {fold: protocol metrics}, "samples": {fold: {"train", "eval"}}}``.

    Raises:
        ValueError: not a supervised config, no shard folder, fewer than two fold values, a
            requested fold with no sample, no protocol (neither ``data.eval_protocol`` nor a
            folder prepared by a dataset command).
    """
    if cfg.task != "supervised":
        raise ValueError(f"cross-validation trains classifiers: task must be 'supervised', got {cfg.task!r}")
    shards = shards or cfg.data.train_shards
    if not shards:
        raise ValueError("cross-validation needs a prepared shard folder holding every fold (--shards or data.train_shards)")
    info = read_dataset_json(shards)
    protocol = cfg.data.eval_protocol or (info.get("extra") or {}).get("dataset")
    spec = registry.get(protocol).protocol if protocol in registry.names() else None
    field = field or (spec.fold_field if spec is not None else "fold")
    values = fold_values(shards, field, info)
    found = sorted({v for v in values if v is not None})
    if folds is None:
        folds = found
    if len(found) < 2:
        raise ValueError(f"{shards}: the samples carry {len(found)} value(s) of {field!r} ({found}); cross-validation needs at least two")
    unknown = [f for f in folds if f not in found]
    if unknown:
        raise ValueError(f"{shards}: no sample has {field} in {unknown}; the folds present are {found}")
    if spec is None:
        raise ValueError(
            f"{shards} does not say which dataset it holds: set data.eval_protocol to one of {list(registry.names())} "
            f"(the protocol gives the metrics and the headline figure)"
        )
    if spec.folds is not None and sorted(found) != sorted(spec.folds):
        logger.warning("%s: %s defines folds %s; the samples carry %s", shards, protocol, list(spec.folds), found)
    metric = spec.headline
    missing_field = [i for i, v in enumerate(values) if v is None]
    if missing_field:
        raise ValueError(f"{shards}: sample {missing_field[0]} (and {len(missing_field) - 1} more) has no annotation field {field!r}")
    vocab = LabelVocab(info["labels"])
    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_fold: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    for k in folds:
        train_idx = select_samples(values, field, lambda v, k=k: v != k)
        eval_idx = select_samples(values, field, {k})
        sizes[str(k)] = {"train": len(train_idx), "eval": len(eval_idx)}
        run_dir = out / f"{field}{k}"
        done = run_dir / "eval_metrics.json"
        if done.exists() and "protocol" in json.loads(done.read_text()):
            logger.info("%s %s: finished earlier, metrics read from %s", field, k, done)
            per_fold[str(k)] = json.loads(done.read_text())["protocol"]
            continue
        logger.info("%s %s: training on %d samples, evaluating on %d", field, k, len(train_idx), len(eval_idx))
        fold_cfg = replace(
            cfg,
            data=replace(cfg.data, train_shards=None, eval_shards=None, train_manifest=None, eval_manifest=None, eval_protocol=protocol),
            run=replace(cfg.run, out_dir=str(run_dir)),
        )
        train_set = FoldSubset(build_shard_dataset(cfg, shards, train=True, vocab=vocab), train_idx)
        eval_set = FoldSubset(build_shard_dataset(cfg, shards, train=False, vocab=vocab), eval_idx)
        metrics = Trainer(fold_cfg, train_set, eval_set, vocab).fit()
        per_fold[str(k)] = metrics["protocol"]
    summary = fold_summary([per_fold[str(k)][metric] for k in folds])
    result = {"protocol": protocol, "field": field, "metric": metric, "summary": summary, "per_fold": per_fold, "samples": sizes,
              "shards": str(shards)}
    (out / "cv_metrics.json").write_text(json.dumps(result, indent=2))
    logger.info("cross-validation %s over %d folds: %.4f +- %.4f", metric, len(folds), summary["mean"], summary["std"])
    return result
