"""Cross-validation over the folds recorded in prepared shards (ESC-50's five-fold protocol).

``zorro prepare esc50`` keeps each clip's ``fold`` in its sample meta. :func:`run_cross_validation`
trains one model per fold value ``k`` on the samples of every other fold and evaluates it on
fold ``k`` with the dataset's protocol (:mod:`zorro.protocols`), then reports the mean and
standard deviation over the folds (:func:`zorro.metrics.fold_summary`). Each fold is an
ordinary run folder ``OUT/fold{k}`` (resumable like any run); a fold whose run folder already
holds its final metrics is not trained again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset, Subset

from zorro.data import LabelVocab
from zorro.data.sample_meta import sample_metadata, select_samples
from zorro.metrics import fold_summary
from zorro.train import TrainConfig, Trainer
from zorro.train.build import build_shard_dataset

logger = logging.getLogger(__name__)

__all__ = ["run_cross_validation", "FoldSubset"]

#: the metric summarised over folds for each protocol
HEADLINE = {"esc50": "top1", "kinetics-sounds": "top1", "vggsound": "top1", "audioset": "mAP"}


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


def run_cross_validation(
    cfg: TrainConfig, *, shards: str | None = None, field: str = "fold", folds: Sequence[Any] | None = None
) -> dict[str, Any]:
    """Train and evaluate one model per fold; write ``OUT/cv_metrics.json``.

    Args:
        cfg: a supervised config; ``data.eval_protocol`` chooses the metrics (default
            ``"esc50"``); ``run.out_dir`` is the parent of the fold run folders.
        shards: the prepared folder holding every fold (default ``cfg.data.train_shards``).
        field: the sample-meta field holding the fold.
        folds: the fold values to hold out, in order (default: every value found, sorted).

    Returns:
        ``{"protocol", "field", "metric", "summary": {"mean", "std", "folds", "num_folds"},
        "per_fold": {fold: protocol metrics}, "samples": {fold: {"train", "eval"}}}``.

    Raises:
        ValueError: not a supervised config, no shard folder, fewer than two fold values, a
            requested fold with no sample.
    """
    if cfg.task != "supervised":
        raise ValueError(f"cross-validation trains classifiers: task must be 'supervised', got {cfg.task!r}")
    shards = shards or cfg.data.train_shards
    if not shards:
        raise ValueError("cross-validation needs a prepared shard folder holding every fold (--shards or data.train_shards)")
    protocol = cfg.data.eval_protocol or "esc50"
    metric = HEADLINE[protocol]
    samples, info = sample_metadata(shards)
    found = sorted({(s.get("meta") or {}).get(field) for s in samples} - {None})
    if folds is None:
        folds = found
    if len(found) < 2:
        raise ValueError(f"{shards}: the samples carry {len(found)} value(s) of {field!r} ({found}); cross-validation needs at least two")
    unknown = [f for f in folds if f not in found]
    if unknown:
        raise ValueError(f"{shards}: no sample has {field} in {unknown}; the folds present are {found}")
    vocab = LabelVocab(info["labels"])
    out = Path(cfg.run.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_fold: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    for k in folds:
        train_idx = select_samples(samples, field, lambda v, k=k: v != k)
        eval_idx = select_samples(samples, field, {k})
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
