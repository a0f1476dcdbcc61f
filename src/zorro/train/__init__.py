"""Training: contrastive pre-training and supervised fine-tuning in one plain PyTorch loop.

Start with :func:`train` (or :class:`Trainer`) and :class:`TrainConfig`. The package's
modules, one idea each:

- :mod:`~zorro.train.config`: :class:`TrainConfig` and its sections (model / data / optim /
  objective / run), YAML-ready, with errors that say where a misplaced key belongs;
- :mod:`~zorro.train.build`: the backbone, objective and datasets of a config;
- :mod:`~zorro.train.objectives`: :class:`SupervisedObjective`, :class:`ContrastiveObjective`, and
  :func:`build_augment` (augmentation options -> :class:`~zorro.augment.ClipAugment`);
- :mod:`~zorro.train.features`: :class:`CachedClips`, the in-memory clip and feature cache;
- :mod:`~zorro.train.optim`: AdamW parameter groups and the warm-up + cosine schedule;
- :mod:`~zorro.train.precision`: native bf16 detection, ``"auto"`` precision, autocast;
- :mod:`~zorro.train.distributed`: torchrun process-group set-up and the resumable sampler;
- :mod:`~zorro.train.rng`: seeding;
- :mod:`~zorro.train.reporting`: TensorBoard event files and console progress of a run;
- :mod:`~zorro.train.record`: the settings a run records (its ``config.json`` is the truth);
- :mod:`~zorro.train.data_report`: what a run's clips held (modalities, padding), said once;
- :mod:`~zorro.train.run_folder`: reading a supervised run folder back (:func:`load_run`);
- :mod:`~zorro.train.loop`: :class:`Trainer` (the loop, checkpoints, exact resume) and :func:`train`.

Every name below is importable from ``zorro.train`` directly.
"""

from zorro.train.build import build_backbone, build_dataset, build_task
from zorro.train.config import (
    TASKS,
    DataSection,
    ModelSection,
    ObjectiveSection,
    OptimSection,
    RunSection,
    TrainConfig,
    sectioned,
)
from zorro.train.distributed import DistInfo, ResumableSampler, init_distributed
from zorro.train.features import CachedClips
from zorro.train.loop import NonFiniteLossError, Trainer, train
from zorro.train.objectives import ContrastiveObjective, SupervisedObjective, build_augment
from zorro.train.optim import param_groups, warmup_cosine
from zorro.train.precision import PRECISIONS, native_bf16, resolve_precision
from zorro.train.rng import seed_everything
from zorro.train.data_report import DataReport
from zorro.train.record import check_sample_rates, dataset_settings, resolve_run_config, with_overrides
from zorro.train.run_folder import LoadedRun, load_run, read_run_config, run_dataset

__all__ = [
    "TASKS", "PRECISIONS", "TrainConfig", "ModelSection", "DataSection", "OptimSection", "ObjectiveSection", "RunSection",
    "sectioned", "NonFiniteLossError", "Trainer", "train", "DistInfo", "init_distributed", "ResumableSampler", "CachedClips",
    "SupervisedObjective", "ContrastiveObjective", "param_groups", "warmup_cosine", "seed_everything", "build_backbone",
    "build_augment", "build_task", "build_dataset", "native_bf16", "resolve_precision", "DataReport", "check_sample_rates",
    "dataset_settings", "resolve_run_config", "with_overrides", "LoadedRun", "load_run", "read_run_config", "run_dataset",
]
