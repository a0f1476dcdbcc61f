"""Reading a supervised run folder back: the classifier, its labels and the settings it
trained with, and datasets that read clips exactly as the run did.

``zorro evaluate`` and ``zorro embed`` go through :func:`load_run` and :func:`run_dataset`,
so both decode at the run's recorded duration, frame count, image size, sample rate and
normalisation unless told otherwise (overrides are logged, see
:func:`zorro.train.record.with_overrides`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import Dataset

from zorro.data import LabelVocab
from zorro.tasks import ZorroClassifier
from zorro.train.build import build_dataset, build_shard_dataset
from zorro.train.config import TrainConfig, sectioned
from zorro.train.record import check_sample_rates

__all__ = ["LoadedRun", "load_run", "read_run_config", "run_dataset"]

logger = logging.getLogger("zorro.train")


@dataclass
class LoadedRun:
    """A supervised run folder, read back (:func:`load_run`).

    Attributes:
        folder: the run folder.
        config: its ``config.json`` as a :class:`TrainConfig` (``data.sample_rate`` resolved
            to the model's rate where the run left it unset).
        model: the classifier (:meth:`ZorroClassifier.from_run`), in eval mode on CPU.
        vocab: the label vocabulary (``labels.json``).
    """

    folder: Path
    config: TrainConfig
    model: ZorroClassifier
    vocab: LabelVocab


def read_run_config(run_dir: str | os.PathLike, *, model_sample_rate: int | None = None) -> TrainConfig:
    """``RUN/config.json`` as a :class:`TrainConfig` (flat configs of older versions are
    sectioned). ``data.sample_rate`` left unset is resolved to ``model_sample_rate`` (or
    ``model.arch.sample_rate``), and a recorded rate other than the model's raises
    ``ValueError`` naming both."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path} is missing")
    cfg = TrainConfig.from_dict(sectioned(json.loads(path.read_text(encoding="utf-8"))))
    model_rate = int(model_sample_rate if model_sample_rate is not None else cfg.model.arch.get("sample_rate", 16000))
    rate = model_rate if cfg.data.sample_rate is None else int(cfg.data.sample_rate)
    check_sample_rates(rate, model_rate, where=f"{path}: data.sample_rate")
    return replace(cfg, data=replace(cfg.data, sample_rate=rate))


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """Read a supervised run folder (``zorro train``): see :class:`LoadedRun`.

    Raises:
        FileNotFoundError: not a supervised run folder.
        ValueError: its recorded sample rate differs from its model's.
    """
    folder = Path(run_dir)
    model = ZorroClassifier.from_run(folder)
    cfg = read_run_config(folder, model_sample_rate=model.backbone.config.audio_sample_rate)
    return LoadedRun(folder=folder, config=cfg, model=model, vocab=LabelVocab(model.labels))


def run_dataset(cfg: TrainConfig, vocab: LabelVocab | None, *, manifest: str | None = None, shards: str | None = None) -> Dataset:
    """Evaluation clips of ``manifest`` or of the shard folder ``shards`` (one of them), read
    with ``cfg``'s data settings; with neither, the run's own evaluation data
    (``data.eval_manifest`` / ``data.eval_shards``).

    Raises:
        ValueError: both or none given and the run recorded no evaluation data; labels
            outside ``vocab`` (the message lists the vocabulary).
    """
    if manifest and shards:
        raise ValueError("give the evaluation data as a manifest or as shards, not both")
    if not (manifest or shards):
        manifest, shards = cfg.data.eval_manifest, cfg.data.eval_shards
        if not (manifest or shards):
            raise ValueError("give the evaluation data (--manifest or --shards): the run records none of its own")
        logger.info("evaluating on the run's own evaluation data: %s", manifest or shards)
    if shards:
        return build_shard_dataset(cfg, shards, train=False, vocab=vocab)
    return build_dataset(cfg, manifest, train=False, vocab=vocab)
