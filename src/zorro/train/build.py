"""Building a run's parts from its :class:`~zorro.train.config.TrainConfig`: the backbone,
the objective module of the task, and the datasets read from manifests."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from zorro.data import ClipDataset, LabelVocab, ShardDataset
from zorro.data.modalities import extra_from_table
from zorro.model import Zorro
from zorro.model_config import audio_sample_rate
from zorro.tasks import ZorroClassifier, ZorroPretrainer
from zorro.train.objectives import ContrastiveObjective, SupervisedObjective, build_augment

if TYPE_CHECKING:
    from zorro.train.config import TrainConfig

__all__ = ["build_backbone", "build_dataset", "build_shard_dataset", "build_task", "compile_backbone", "data_modalities",
           "data_sample_rate", "model_sample_rate"]

logger = logging.getLogger("zorro.train")


def build_backbone(cfg: TrainConfig) -> Zorro:
    """The Zorro backbone: from ``cfg.model.init_from`` when given, else new from
    ``cfg.model.arch``; with activation checkpointing when ``cfg.model.grad_checkpointing``."""
    m = cfg.model
    if m.init_from:
        folder = _pretrained_folder(m.init_from)
        logger.info("initialising the backbone from %s", folder)
        model = Zorro.from_pretrained(str(folder))
    else:
        model = Zorro(**m.arch)
    return model.set_grad_checkpointing(m.grad_checkpointing)


def compile_backbone(backbone: Zorro) -> Zorro:
    """``model.compile: true``: compile, in place, the entry points the tasks call.

    The tasks call :meth:`Zorro.encode`, not the module itself, so compiling the module's
    ``__call__`` alone (``nn.Module.compile``) would leave training uncompiled. Both are
    compiled here (``torch.compile`` with its defaults: a batch size that changes -- the last
    batch of an epoch -- makes that dimension dynamic after one recompilation). The weights
    keep their names: no wrapper module, no ``_orig_mod.`` prefix. Returns ``backbone``.
    """
    import torch

    backbone.compile()
    backbone.encode = torch.compile(backbone.encode)  # an instance attribute: the class is untouched
    return backbone


def build_task(cfg: TrainConfig, backbone: Zorro, num_classes: int | None) -> nn.Module:
    """The objective module of ``cfg.task`` around ``backbone`` (``num_classes`` is needed
    by the supervised task only)."""
    o = cfg.objective
    if cfg.task == "pretrain":
        task = ZorroPretrainer(backbone, proj_dim=o.proj_dim, temperature=o.temperature, batch_norm=o.proj_batch_norm)
        return ContrastiveObjective(task, fusion_weight=o.fusion_weight, global_weight=o.global_weight, intra_weight=o.intra_weight,
                                    augment=build_augment(o.augment), cross_view=o.cross_view)
    if not num_classes:
        raise ValueError("supervised training needs labels (a manifest with a label column)")
    task = ZorroClassifier(backbone, num_classes)
    # Supervised runs augment only when options are given (pre-training always does: its two
    # views need it), so an empty ``augment`` keeps plain supervised training unchanged.
    augment = build_augment(o.augment) if o.augment else None
    return SupervisedObjective(task, multi_label=cfg.data.multi_label, label_smoothing=o.label_smoothing, mixup_alpha=o.mixup_alpha,
                               augment=augment)


def model_sample_rate(cfg: TrainConfig) -> int:
    """The audio rate (Hz) the run's model is built for: that of the ``model.init_from``
    folder when given, else ``model.arch.sample_rate`` (16 kHz by default)."""
    if cfg.model.init_from:
        from zorro.hub import read_config

        return int(read_config(_pretrained_folder(cfg.model.init_from)).audio_sample_rate or 16000)
    return int(audio_sample_rate(cfg.model.arch) or 16000)


def data_sample_rate(cfg: TrainConfig) -> int:
    """The rate (Hz) a run decodes its audio at: ``data.sample_rate``, or the model's rate
    when it is None (files at any other rate are resampled by the decoder)."""
    return int(cfg.data.sample_rate) if cfg.data.sample_rate is not None else model_sample_rate(cfg)


def data_modalities(cfg: TrainConfig) -> dict[str, str]:
    """The extra modalities the run's datasets return, ``name -> kind``: the ``text`` and
    ``sequence`` modalities of the model's table (``model.arch.modalities``, or that of the
    ``model.init_from`` folder); ``{}`` for an audio-video model. Raises ValueError for a
    modality of another kind (manifests and shards hold text and sequences only)."""
    if cfg.model.init_from:
        from zorro.hub import read_config

        table = read_config(_pretrained_folder(cfg.model.init_from)).modality_specs()
    else:
        table = cfg.model.arch.get("modalities") or {}
    try:
        return extra_from_table(table)
    except ValueError as err:
        raise ValueError(f"the model's modalities cannot all be read from manifests or shards: {err}") from None


def _pretrained_folder(path: str) -> Path:
    """A ``from_pretrained`` folder, or the ``model/`` folder inside a run folder."""
    src = Path(path)
    return src / "model" if (src / "model" / "config.json").exists() else src


def build_dataset(cfg: TrainConfig, manifest: str, *, train: bool, vocab: LabelVocab | None) -> ClipDataset:
    """A :class:`~zorro.data.ClipDataset` over ``manifest`` with the config's clip settings
    (``cfg.data``: geometry, sample rate, crops, normalisation) and seed (``cfg.run.seed``).
    ``train=True`` draws random windows and crops unless ``data.train_crop`` is ``"centre"``.
    The model's text and sequence modalities (:func:`data_modalities`) are read from the
    manifest's columns of those names."""
    d = cfg.data
    return ClipDataset.from_manifest(
        manifest,
        root=d.data_root,
        vocab=vocab,
        multi_label=d.multi_label,
        train=train and d.train_crop == "random",
        duration=d.duration,
        num_frames=d.num_frames,
        image_size=d.image_size,
        sample_rate=data_sample_rate(cfg),
        clips_per_video=1 if train else d.eval_clips,
        mean=d.video_mean,
        std=d.video_std,
        scale=d.crop_scale,
        ratio=d.crop_ratio,
        hflip_prob=d.hflip_prob,
        seed=cfg.run.seed,
        backend=d.decoder,
        seek_mode=d.seek_mode,
        fast_decode=d.fast_decode,
        decode_time_limit=d.decode_time_limit,
        extra_modalities=data_modalities(cfg),
        text_max_length=d.text_max_length,
    )


def build_shard_dataset(cfg: TrainConfig, folder: str, *, train: bool, vocab: LabelVocab | None) -> ShardDataset:
    """A :class:`~zorro.data.ShardDataset` over a prepared shard folder (``zorro prepare``)
    with the config's clip geometry (``cfg.data``: duration, frames, image size; the sample
    rate must be the stored one) and seed. Training sets hand uint8 frames to the trainer,
    which normalises them on its device; evaluation sets return normalised float32 frames
    (as :class:`~zorro.data.ClipDataset` does). Labels come from the folder's
    ``dataset.json`` (mapped into ``vocab`` when given). The model's text and sequence
    modalities (:func:`data_modalities`) are read from the samples' ``<name>.txt`` /
    ``<name>.npy`` members."""
    d = cfg.data
    if not train and d.eval_clips != 1:
        raise ValueError(f"data.eval_clips={d.eval_clips} applies to manifests; prepared shards hold the windows chosen when they were prepared (one item each)")
    dataset = ShardDataset(
        folder,
        vocab=vocab,
        train=train and d.train_crop == "random",
        duration=d.duration,
        num_frames=d.num_frames,
        image_size=d.image_size,
        sample_rate=data_sample_rate(cfg),
        mean=d.video_mean,
        std=d.video_std,
        scale=d.crop_scale,
        ratio=d.crop_ratio,
        hflip_prob=d.hflip_prob,
        seed=cfg.run.seed,
        video_dtype="uint8" if train else "float32",
        extra_modalities=data_modalities(cfg),
        text_max_length=d.text_max_length,
    )
    if dataset.multi_label != d.multi_label:
        raise ValueError(f"{folder} holds {'multi' if dataset.multi_label else 'single'}-label samples but data.multi_label is {d.multi_label}")
    return dataset
