"""Training: contrastive pre-training and supervised fine-tuning in one plain PyTorch loop.

The loop is deliberately ordinary: AdamW (no weight decay on norms, biases and learned
tokens), linear warm-up then cosine decay, gradient clipping and accumulation, bf16
autocast, optional ``torch.compile``. Multi-process training uses
:class:`~torch.nn.parallel.DistributedDataParallel` set up from the environment ``torchrun``
provides (gloo on CPU, nccl on CUDA) and a :class:`~torch.utils.data.DistributedSampler`;
rank 0 alone writes files.

Resume is exact: a checkpoint holds the model, optimiser, scheduler, step, the position in
the epoch and every RNG state, and the data order depends only on ``(seed, epoch)``, so a
run killed at any point and resumed ends with the weights of an uninterrupted run.

One forward per micro-batch: examples are grouped by the modalities they have
(:func:`zorro.data.split_by_modality`) *inside* the objective module, so DDP sees one
forward and one backward however the batch is made up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from zorro.audio import AudioFrontend
from zorro.augment import ClipAugment
from zorro.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from zorro.data import ClipDataset, LabelVocab, SkipTracker, collate_clips, split_by_modality
from zorro.losses import ZorroContrastiveLoss, classification_loss, info_nce, mixup
from zorro.model import Zorro
from zorro.tasks import ZorroClassifier, ZorroPretrainer

logger = logging.getLogger(__name__)

TASKS = ("pretrain", "supervised")
PRECISIONS = ("auto", "fp32", "bf16")


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite; the last good state has been checkpointed."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved (resolved) as ``config.json`` in the run folder."""

    task: str = "supervised"  # "pretrain" (contrastive, no labels) or "supervised"
    model: dict[str, Any] = field(default_factory=lambda: {"dim": 256, "depth": 6})  # Zorro kwargs
    init_from: str | None = None  # backbone weights: a from_pretrained folder or a run folder
    # data
    train_manifest: str | None = None  # CSV/JSONL manifest (path,label[,start,end])
    eval_manifest: str | None = None  # evaluated at the end (and every eval_every epochs)
    data_root: str | None = None  # relative manifest paths are resolved against it
    multi_label: bool = False  # labels are sets (sigmoid BCE, mAP) instead of one class
    duration: float = 2.0  # clip length (s)
    num_frames: int = 8  # frames per clip
    image_size: int = 224  # square crop side (pixels)
    sample_rate: int = 16000  # audio rate (Hz)
    eval_clips: int = 1  # evenly spaced clips per file at evaluation
    decoder: str = "pyav"  # "pyav", "torchcodec" or "auto"
    seek_mode: str = "exact"  # "exact" frames, or "keyframe" (approximate, much faster on long files)
    fast_decode: bool = False  # skip h264 deblocking (small pixel error, faster)
    cache_decoded: bool = False  # decode every clip once and keep it in memory (small data)
    num_workers: int = 2  # DataLoader worker processes
    batch_size: int = 32  # per process, per micro-batch
    eval_batch_size: int = 64
    # optimisation
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (None: epochs)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05
    warmup_steps: int = 100  # linear warm-up (optimiser steps)
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    accum_steps: int = 1  # micro-batches per optimiser step
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto" (bf16 where the hardware runs it natively)
    compile: bool = False  # torch.compile the backbone
    grad_checkpointing: bool = False  # recompute each layer's activations in backward (less memory, ~1/3 more compute)
    # objectives
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0  # 0 = off
    proj_dim: int = 128  # contrastive projection width
    temperature: float | None = None  # fixed InfoNCE temperature (None: learned, clamped)
    proj_batch_norm: bool = True  # standardise outputs over the global batch before projecting
    fusion_weight: float = 1.0  # weight of the o_F term of the contrastive loss
    intra_weight: float = 0.0  # weight of the two-view audio-audio and video-video terms (0 = one view)
    cross_view: bool = False  # two views; the audio-video term averages all four view pairings
    augment: dict[str, Any] = field(default_factory=dict)  # ClipAugment options: pre-training's two views; supervised: off when empty
    global_weight: float = 1.0  # weight of the o_G term of the contrastive loss
    # run
    out_dir: str = "runs/default"
    seed: int = 0
    ckpt_every: int = 0  # optimiser steps between checkpoints (0 = end of each epoch only)
    keep_checkpoints: int = 2
    log_every: int = 10  # optimiser steps between log lines
    eval_every: int = 0  # epochs between evaluations (0 = at the end only)
    resume: bool = True  # continue from the run folder's latest checkpoint
    progress: bool = True  # progress bar on rank 0

    def __post_init__(self) -> None:
        for f in fields(self):  # YAML 1.1 reads "3e-4" as text: accept numbers written that way
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and isinstance(value, str):
                try:
                    setattr(self, f.name, float(value))
                except ValueError:
                    raise ValueError(f"{f.name} must be a number, got {value!r}") from None
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch_size", "accum_steps", "epochs", "num_frames", "image_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.duration <= 0:
            raise ValueError(f"lr and duration must be > 0, got lr={self.lr}, duration={self.duration}")
        for name in ("cross_view", "grad_checkpointing", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.augment, Mapping):
            raise TypeError(f"augment must be a mapping of ClipAugment options, got {self.augment!r}")
        build_augment(self.augment)  # unknown or bad options fail here, not at the first batch

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. parsed YAML); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known keys: {sorted(known)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


# ---------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    """Process-group facts of this process (a single process has rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs progress."""
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); a plain process gets a 1-process info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` whose epoch can start ``skip`` items in (exact resume)."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.skip = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return self.num_samples - self.skip


# ---------------------------------------------------------------------------- data


class CachedClips(Dataset):
    """Every item of ``dataset`` decoded once and kept in memory (for small datasets).

    Items that could not be read are dropped and counted (``num_skipped``); they are logged
    by the :class:`~zorro.data.SkipTracker` used while caching.
    """

    def __init__(self, dataset: Dataset, *, num_workers: int = 0, batch_size: int = 32) -> None:
        self.audio_features_key: tuple | None = None
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_clips)
        tracker = SkipTracker()
        self.items: list[dict[str, Any]] = []
        for batch in loader:
            tracker.update(batch)
            for i in range(len(batch["index"])):
                label = batch["label"][i]
                item = {"label": int(label) if label.dim() == 0 else label, "index": len(self.items), "path": batch["path"][i]}
                item["audio"] = batch["audio"][i] if batch["audio"] is not None and batch["has_audio"][i] else None
                item["video"] = batch["video"][i] if batch["video"] is not None and batch["has_video"][i] else None
                self.items.append(item)
        self.num_skipped = tracker.end_epoch()
        if not self.items:
            raise ValueError("no clip of the dataset could be decoded")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]

    @torch.no_grad()
    def add_audio_features(self, frontend: AudioFrontend, *, batch_size: int = 256) -> None:
        """Compute ``frontend.features`` of every clip's audio once and keep it as the item's
        ``audio_features`` (``(F, T)`` float32), replacing features from another front-end.

        Training objectives then skip the per-step front-end analysis (and, with
        ``ClipAugment(audio_domain="fbank")``, augment these features instead of the
        waveform). About 0.1 MB per one-second clip at 64 mel bins.
        """
        if not isinstance(frontend, AudioFrontend):
            raise TypeError(f"add_audio_features needs a zorro.audio.AudioFrontend (e.g. model.audio_frontend), got {type(frontend).__name__}")
        key = frontend.analysis_key()
        if key == self.audio_features_key:
            return
        t0 = time.perf_counter()
        with_audio = [it for it in self.items if it.get("audio") is not None]
        by_length: dict[int, list[dict[str, Any]]] = {}
        for it in with_audio:
            by_length.setdefault(int(it["audio"].shape[-1]), []).append(it)
        device = frontend.window.device
        for group in by_length.values():
            for i in range(0, len(group), batch_size):
                chunk = group[i : i + batch_size]
                feats = frontend.features(torch.stack([it["audio"] for it in chunk]).to(device)).cpu()
                for it, f in zip(chunk, feats):
                    it["audio_features"] = f
        self.audio_features_key = key
        logger.info("front-end features of %d clips computed in %.1f s", len(with_audio), time.perf_counter() - t0)


def build_dataset(cfg: TrainConfig, manifest: str, *, train: bool, vocab: LabelVocab | None) -> ClipDataset:
    """A :class:`~zorro.data.ClipDataset` over ``manifest`` with the config's clip geometry."""
    return ClipDataset.from_manifest(
        manifest,
        root=cfg.data_root,
        vocab=vocab,
        multi_label=cfg.multi_label,
        train=train,
        duration=cfg.duration,
        num_frames=cfg.num_frames,
        image_size=cfg.image_size,
        sample_rate=cfg.sample_rate,
        clips_per_video=1 if train else cfg.eval_clips,
        seed=cfg.seed,
        backend=cfg.decoder,
        seek_mode=cfg.seek_mode,
        fast_decode=cfg.fast_decode,
    )


# ---------------------------------------------------------------------------- objectives


def _features_or_analyse(features: torch.Tensor | None, audio: torch.Tensor, frontend: AudioFrontend) -> torch.Tensor:
    """The batch's cached front-end features ``(b, F, T)`` when it carries them, else the
    front-end's analysis of ``audio`` ``(b, samples)`` (without gradients: the front-end has
    no trainable parameters before normalisation)."""
    if features is not None:
        return features
    with torch.no_grad():
        return frontend.features(audio)


class SupervisedObjective(nn.Module):
    """Classifier heads on every output, losses summed over heads (see
    :func:`zorro.losses.classification_loss`), examples grouped by available modalities.

    ``augment`` (a :class:`~zorro.augment.ClipAugment`, or None for none) is applied to each
    training batch -- audio ``(b, samples)`` and video ``(b, c, t, h, w)`` separately --
    before mixup; evaluation never augments. With ``augment.audio_domain == "fbank"`` the
    audio is augmented (and mixed up) as raw front-end features instead of waveforms. Batches
    carrying ``audio_features`` (a :class:`CachedClips` after :meth:`CachedClips.add_audio_features`)
    skip the front-end's analysis whenever that gives the same result (see
    :attr:`uses_audio_features`)."""

    def __init__(self, task: ZorroClassifier, *, multi_label: bool, label_smoothing: float, mixup_alpha: float,
                 augment: ClipAugment | None = None) -> None:
        super().__init__()
        self.task = task
        self.multi_label = multi_label
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.augment = augment

    @property
    def fbank_domain(self) -> bool:
        """Whether training augments (and mixes up) the audio as front-end features."""
        return self.augment is not None and self.augment.audio_domain == "fbank"

    @property
    def uses_audio_features(self) -> bool:
        """Whether training batches are better fed as front-end features than waveforms: no
        waveform-domain augmentation or mixup is asked for (the result is then the same)."""
        return self.fbank_domain or (self.augment is None and self.mixup_alpha == 0)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over the batch (0-d tensor) and its parts per head (floats)."""
        total_n = len(batch["label"])
        loss, parts = None, {}
        frontend = self.task.backbone.audio_frontend
        for group in split_by_modality(dict(batch)):
            audio, video, target = group["audio"], group["video"], group["label"]
            feats = group.get("audio_features") if self.training and self.uses_audio_features else None
            if audio is not None and self.fbank_domain and self.training:
                feats = _features_or_analyse(feats, audio, frontend)
            if feats is not None:
                audio = None
            if self.training and self.augment is not None:
                if feats is not None:
                    feats = self.augment.fbank(feats, frontend)
                else:
                    audio = None if audio is None else self.augment.audio(audio)
                video = None if video is None else self.augment.video(video)
            if self.training and self.mixup_alpha > 0:
                num_classes = self.task.heads.num_classes
                if feats is not None:  # (fbank domain) mixes the raw log-mel features
                    (feats, video), target, _, _ = mixup([feats, video], target, alpha=self.mixup_alpha, num_classes=num_classes)
                else:
                    (audio, video), target, _, _ = mixup([audio, video], target, alpha=self.mixup_alpha, num_classes=num_classes)
            logits = self.task(audio=audio, video=video, audio_features=feats)
            group_loss, group_parts = classification_loss(
                logits, target, multi_label=self.multi_label, label_smoothing=self.label_smoothing
            )
            weight = len(group["label"]) / total_n
            loss = group_loss * weight if loss is None else loss + group_loss * weight
            for k, v in group_parts.items():
                parts[k] = parts.get(k, 0.0) + v * weight
        return loss, parts


class ContrastiveObjective(nn.Module):
    """Symmetric InfoNCE between o_A and o_V plus the fusion/global terms
    (:class:`zorro.losses.ZorroContrastiveLoss`). Clips lacking a modality are left out.

    With ``intra_weight > 0`` (or ``cross_view``) every clip is seen as two augmented views
    (:class:`zorro.augment.ClipAugment`, one forward over the ``2B`` clips): the loss is the
    mean of the two views' losses plus ``intra_weight`` times the audio-audio and
    video-video InfoNCE between the views. With ``cross_view`` the audio-video term is the
    mean over all four pairings of the views (audio of view 1 with video of view 1 and of
    view 2, and so on) instead of the two same-view pairings: the pairs then differ in both
    modalities' nuisances, at no extra forward cost.

    With ``augment.audio_domain == "fbank"`` each clip's front-end features are computed once
    (or taken from the batch's ``audio_features``) and the two audio views are drawn from
    them by :meth:`~zorro.augment.ClipAugment.fbank`, instead of augmenting the waveform
    twice and analysing both views.
    """

    def __init__(self, task: ZorroPretrainer, *, fusion_weight: float, global_weight: float, intra_weight: float = 0.0,
                 augment: ClipAugment | None = None, cross_view: bool = False) -> None:
        super().__init__()
        if not (isinstance(intra_weight, (int, float)) and math.isfinite(intra_weight) and intra_weight >= 0):
            raise ValueError(f"intra_weight must be a finite number >= 0, got {intra_weight!r}")
        if not isinstance(cross_view, bool):
            raise TypeError(f"cross_view must be True or False, got {cross_view!r}")
        self.task = task
        self.loss = ZorroContrastiveLoss(fusion_weight=fusion_weight, global_weight=global_weight)
        self.intra_weight = float(intra_weight)
        self.cross_view = cross_view
        self.augment = augment if augment is not None else ClipAugment()
        self.num_unpaired = 0

    @property
    def uses_audio_features(self) -> bool:
        """Whether batches are better fed as front-end features than waveforms (audio
        augmented in the fbank domain, or not augmented at all)."""
        return self.augment.audio_domain == "fbank" or (self.intra_weight == 0 and not self.cross_view)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean contrastive loss over the paired clips of the batch and its parts."""
        audio, video = batch["audio"], batch["video"]
        if audio is None or video is None:
            raise ValueError("contrastive pre-training needs clips with both audio and video; this batch has only one modality")
        feats = batch.get("audio_features")
        paired = batch["has_audio"] & batch["has_video"]
        if not bool(paired.all()):
            self.num_unpaired += int((~paired).sum())
            audio, video = audio[paired], video[paired]
            feats = None if feats is None else feats[paired]
        frontend = self.task.backbone.audio_frontend
        if self.intra_weight == 0 and not self.cross_view:
            _, proj = self.task(audio=None if feats is not None else audio, video=video, audio_features=feats)
            scale = self.task.head.logit_scale()
            loss, parts = self.loss(proj, scale)
        else:
            b = audio.shape[0]
            if self.augment.audio_domain == "fbank":
                feats = _features_or_analyse(feats, audio, frontend)  # once for both views
                views_f = torch.cat([self.augment.fbank(feats, frontend), self.augment.fbank(feats, frontend)])
                views_a = None
            else:
                views_a, views_f = torch.cat([self.augment.audio(audio), self.augment.audio(audio)]), None
            views_v = torch.cat([self.augment.video(video), self.augment.video(video)])
            _, proj = self.task(audio=views_a, video=views_v, audio_features=views_f)
            scale = self.task.head.logit_scale()
            first = {k: v[:b] for k, v in proj.items()}
            second = {k: v[b:] for k, v in proj.items()}
            loss_1, parts_1 = self.loss(first, scale)
            loss_2, parts_2 = self.loss(second, scale)
            intra_a = info_nce(first["audio"], second["audio"], scale)
            intra_v = info_nce(first["video"], second["video"], scale)
            loss = 0.5 * (loss_1 + loss_2) + self.intra_weight * (intra_a + intra_v)
            parts = {k: 0.5 * (parts_1[k] + parts_2[k]) for k in parts_1 if k != "total"}
            if self.cross_view:  # swap half of the audio-video weight from the same-view to the cross-view pairs
                same = 0.5 * (info_nce(first["audio"], first["video"], scale) + info_nce(second["audio"], second["video"], scale))
                cross = 0.5 * (info_nce(first["audio"], second["video"], scale) + info_nce(second["audio"], first["video"], scale))
                loss = loss + 0.5 * (cross - same)
                parts["audio_video_cross"] = float(cross.detach())
            parts.update(audio_audio=float(intra_a.detach()), video_video=float(intra_v.detach()))
            parts["total"] = float(loss.detach())
        parts["temperature"] = float(1.0 / scale.detach())
        return loss, parts


# ---------------------------------------------------------------------------- optimiser


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices, none on norms, biases, learned tokens and scales."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("_tokens") or "tokens" in name.split(".")[-1] or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, *, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear from 0 to 1 over ``warmup`` steps, then cosine to
    ``min_ratio`` at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------- RNG


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- model building


def build_backbone(cfg: TrainConfig) -> Zorro:
    """The Zorro backbone: from ``cfg.init_from`` when given, else new from ``cfg.model``;
    with activation checkpointing when ``cfg.grad_checkpointing``."""
    if cfg.init_from:
        src = Path(cfg.init_from)
        folder = src / "model" if (src / "model" / "config.json").exists() else src
        logger.info("initialising the backbone from %s", folder)
        model = Zorro.from_pretrained(str(folder))
    else:
        model = Zorro(**cfg.model)
    return model.set_grad_checkpointing(cfg.grad_checkpointing)


def build_augment(options: Mapping[str, Any]) -> ClipAugment:
    """A :class:`~zorro.augment.ClipAugment` from a config dict (lists become tuples);
    unknown keys raise ``ValueError``."""
    known = {f.name for f in fields(ClipAugment) if f.init}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown augment options {unknown}; known: {sorted(known)}")
    return ClipAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def build_task(cfg: TrainConfig, backbone: Zorro, num_classes: int | None) -> nn.Module:
    """The objective module of ``cfg.task`` around ``backbone``."""
    if cfg.task == "pretrain":
        task = ZorroPretrainer(backbone, proj_dim=cfg.proj_dim, temperature=cfg.temperature, batch_norm=cfg.proj_batch_norm)
        return ContrastiveObjective(task, fusion_weight=cfg.fusion_weight, global_weight=cfg.global_weight, intra_weight=cfg.intra_weight,
                                    augment=build_augment(cfg.augment), cross_view=cfg.cross_view)
    if not num_classes:
        raise ValueError("supervised training needs labels (a manifest with a label column)")
    task = ZorroClassifier(backbone, num_classes)
    # Supervised runs augment only when options are given (pre-training always does: its two
    # views need it), so an empty ``augment`` keeps plain supervised training unchanged.
    augment = build_augment(cfg.augment) if cfg.augment else None
    return SupervisedObjective(task, multi_label=cfg.multi_label, label_smoothing=cfg.label_smoothing, mixup_alpha=cfg.mixup_alpha,
                               augment=augment)


# ---------------------------------------------------------------------------- the loop


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU with bf16 support,
    or a CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and can be 100x slower
    than fp32 (measured: 0.0008 vs 0.075 TFLOP/s on a 1024^2 ``torch.mm``, AVX2 CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` picks bf16 where :func:`native_bf16` holds;
    an explicit ``"bf16"`` on hardware without it is kept, with a warning."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        warnings.warn(
            f"precision bf16 on {torch.device(device)} without native bf16 (no AVX512-BF16/AMX or CUDA bf16): "
            "autocast will emulate it, typically far slower than fp32; use precision fp32 or auto",
            stacklevel=2,
        )
    return precision


def _autocast(cfg: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Trainer:
    """Runs one training job; see the module docstring.

    Args:
        cfg: the run's configuration.
        train_set: dataset of clip dicts (as :class:`~zorro.data.ClipDataset` yields); built
            from ``cfg.train_manifest`` when None.
        eval_set: evaluation dataset or None.
        vocab: label vocabulary (saved with the run); taken from ``train_set.vocab`` if any.
    """

    def __init__(self, cfg: TrainConfig, train_set: Dataset | None = None, eval_set: Dataset | None = None, vocab: LabelVocab | None = None) -> None:
        self.dist = init_distributed()
        cfg = replace(cfg, precision=resolve_precision(cfg.precision, self.dist.device))  # the caller's config is left as given
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        seed_everything(cfg.seed)
        if train_set is None:
            if not cfg.train_manifest:
                raise ValueError("no training data: give train_manifest in the config (or pass train_set)")
            train_set = build_dataset(cfg, cfg.train_manifest, train=True, vocab=vocab)
        self.vocab = vocab or getattr(train_set, "vocab", None)
        if eval_set is None and cfg.eval_manifest:
            eval_set = build_dataset(cfg, cfg.eval_manifest, train=False, vocab=self.vocab)
        if cfg.cache_decoded:
            train_set = train_set if isinstance(train_set, CachedClips) else CachedClips(train_set, num_workers=cfg.num_workers)
            if eval_set is not None and not isinstance(eval_set, CachedClips):
                eval_set = CachedClips(eval_set, num_workers=cfg.num_workers)
        self.train_set, self.eval_set = train_set, eval_set
        num_classes = len(self.vocab) if self.vocab is not None else None

        self.backbone = build_backbone(cfg)
        self.objective = build_task(cfg, self.backbone, num_classes).to(self.dist.device)
        if getattr(self.objective, "uses_audio_features", False) and isinstance(train_set, CachedClips):
            train_set.add_audio_features(self.backbone.audio_frontend)  # once, instead of every step
        if cfg.compile:
            self.backbone.compile()
        self.ddp = None
        if self.dist.world_size > 1:
            self.ddp = nn.parallel.DistributedDataParallel(self.objective, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(param_groups(self.objective, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
        self.sampler = ResumableSampler(train_set, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=cfg.seed)
        self.micro_per_epoch = len(self.sampler) // cfg.batch_size
        self.steps_per_epoch = self.micro_per_epoch // cfg.accum_steps
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training set gives {len(self.sampler)} clips per process, fewer than one optimiser step "
                f"(batch_size {cfg.batch_size} x accum_steps {cfg.accum_steps})"
            )
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_cosine(s, warmup=cfg.warmup_steps, total=self.total_steps, min_ratio=cfg.min_lr_ratio),
        )
        self.step = 0
        self._last_ckpt_step = -1
        self.history: list[dict[str, Any]] = []
        self.skips = SkipTracker()

    # -------------------------------------------------------------- files

    def _write_run_files(self) -> None:
        if not self.dist.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2, default=str))
        if self.vocab is not None:
            self.vocab.save(self.out / "labels.json")

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.dist.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _checkpoint(self, epoch: int, micro_in_epoch: int) -> None:
        self._last_ckpt_step = self.step
        if not self.dist.is_main:
            return
        save_training_checkpoint(
            self.out / "checkpoints",
            model=self.objective,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            step=self.step,
            config=self.cfg.to_dict(),
            extra={"epoch": epoch, "micro_in_epoch": micro_in_epoch, "history_len": len(self.history),
                   "vocab": None if self.vocab is None else self.vocab.to_json()},
            keep_last=self.cfg.keep_checkpoints,
        )

    def _resume(self) -> tuple[int, int]:
        ckpt = latest_checkpoint(self.out / "checkpoints") if self.cfg.resume else None
        if ckpt is None:
            if self.dist.is_main and (self.out / "log.jsonl").exists():
                (self.out / "log.jsonl").unlink()  # a fresh run starts a fresh log
            return 0, 0
        state = load_training_checkpoint(ckpt, model=self.objective, optimizer=self.optimizer, scheduler=self.scheduler, restore_rng=True)
        extra = state["extra"]
        self.step = int(state["step"])
        logger.info("resumed from %s at step %d (epoch %d)", ckpt, self.step, extra["epoch"])
        if self.dist.is_main and (self.out / "log.jsonl").exists():  # drop log lines written after the checkpoint
            lines = (self.out / "log.jsonl").read_text().splitlines()[: extra["history_len"]]
            (self.out / "log.jsonl").write_text("".join(line + "\n" for line in lines))
            self.history = [json.loads(line) for line in lines]
        return int(extra["epoch"]), int(extra["micro_in_epoch"])

    # -------------------------------------------------------------- loop

    def fit(self) -> dict[str, Any]:
        """Train to the end (resuming if a checkpoint exists); returns the final eval metrics
        (or an empty dict without an eval set)."""
        cfg, device = self.cfg, self.dist.device
        self._write_run_files()
        epoch, micro_start = self._resume()
        module = self.ddp or self.objective
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=cfg.task, unit="step", dynamic_ncols=True)
        t0, seen = time.perf_counter(), 0
        metrics: dict[str, Any] = {}
        while self.step < self.total_steps:
            self.sampler.set_epoch(epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
            self.sampler.skip = micro_start * cfg.batch_size
            loader = DataLoader(
                self.train_set,
                batch_size=cfg.batch_size,
                sampler=self.sampler,
                num_workers=0 if isinstance(self.train_set, CachedClips) else cfg.num_workers,
                collate_fn=collate_clips,
                drop_last=True,
                generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch),
            )
            self.objective.train()
            micro = micro_start
            for batch in loader:
                if micro >= self.steps_per_epoch * cfg.accum_steps or self.step >= self.total_steps:
                    break
                self.skips.update(batch)
                if len(batch["label"]) == 0:
                    micro += 1
                    continue
                batch = _to_device(batch, device)
                last_micro = (micro + 1) % cfg.accum_steps == 0
                sync = self.ddp.no_sync() if (self.ddp is not None and not last_micro) else _nullcontext()
                with sync:
                    with _autocast(cfg, device):
                        loss, parts = module(batch)
                    if not self._all_finite(loss):
                        self._checkpoint(epoch, micro - micro % cfg.accum_steps)
                        raise NonFiniteLossError(
                            f"non-finite loss {float(loss.detach())} at step {self.step} (parts {parts}); the last good state is "
                            f"checkpointed in {self.out / 'checkpoints'}. Lower lr, use fp32, or check the data."
                        )
                    (loss / cfg.accum_steps).backward()
                seen += len(batch["label"]) * self.dist.world_size
                micro += 1
                if not last_micro:
                    continue
                grad_norm = None
                if cfg.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self.objective.parameters(), cfg.grad_clip))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                head = getattr(getattr(self.objective, "task", None), "head", None)
                if head is not None and hasattr(head, "clamp_logit_scale_"):
                    head.clamp_logit_scale_()
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts.get('total', float(loss.detach())):.3f}", clips_s=f"{seen / (time.perf_counter() - t0):.0f}")
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    loss_value = self._global_mean(parts.get("total", float(loss.detach())))
                    record = {"step": self.step, "epoch": epoch, "lr": self.scheduler.get_last_lr()[0],
                              "loss": loss_value, "parts": parts,
                              "clips_per_s": seen / (time.perf_counter() - t0)}
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    self._log(record)
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self._checkpoint(epoch, micro)
            self.skips.end_epoch(epoch)
            epoch, micro_start = epoch + 1, 0
            if self._last_ckpt_step != self.step:
                self._checkpoint(epoch, 0)
            if cfg.eval_every and epoch % cfg.eval_every == 0 and self.eval_set is not None and self.step < self.total_steps:
                metrics = self.evaluate()
                self._log({"step": self.step, "epoch": epoch, "eval": metrics})
        if bar is not None:
            bar.close()
        if self.eval_set is not None:
            metrics = self.evaluate()
            self._log({"step": self.step, "epoch": epoch, "eval": metrics})
        self._finish(metrics)
        if self.dist.world_size > 1:
            dist.barrier()  # other ranks wait while rank 0 writes, so all leave the group together
        return metrics

    def _all_finite(self, loss: torch.Tensor) -> bool:
        """True when the loss is finite on every process (so all ranks stop together)."""
        finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
        if self.dist.world_size > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        return bool(finite.item())

    def _global_mean(self, value: float) -> float:
        """Average of a per-process float over all processes (the value itself when alone)."""
        if self.dist.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.dist.device)
        dist.all_reduce(t)
        return float(t) / self.dist.world_size

    # -------------------------------------------------------------- evaluation and outputs

    def evaluate(self) -> dict[str, Any]:
        """Metrics of the current model on the eval set (see :mod:`zorro.evaluate`)."""
        from zorro.evaluate import evaluate_classifier, evaluate_retrieval

        loader = DataLoader(self.eval_set, batch_size=self.cfg.eval_batch_size, num_workers=0 if isinstance(self.eval_set, CachedClips) else self.cfg.num_workers, collate_fn=collate_clips)
        with _autocast(self.cfg, self.dist.device):
            if self.cfg.task == "pretrain":
                return evaluate_retrieval(self.objective.task, loader, device=self.dist.device)
            return evaluate_classifier(self.objective.task, loader, multi_label=self.cfg.multi_label, device=self.dist.device)

    def _finish(self, metrics: Mapping[str, Any]) -> None:
        if not self.dist.is_main:
            return
        self.backbone.save_pretrained(str(self.out / "model"))
        if self.cfg.task == "supervised":
            from safetensors.torch import save_file

            heads = {k: v.detach().cpu().contiguous() for k, v in self.objective.task.heads.state_dict().items()}
            save_file(heads, str(self.out / "heads.safetensors"))
        if metrics:
            (self.out / "eval_metrics.json").write_text(json.dumps(metrics, indent=2))
        try:
            from zorro.plots import plot_history

            plot_history(self.history, self.out / "loss.png", title=f"{self.cfg.task} loss")
        except ImportError:  # matplotlib is a dependency; tolerate minimal installs
            logger.warning("matplotlib is not installed: no loss plot written")
        num_skipped = self.skips.total_skipped
        if num_skipped:
            logger.warning("%d clips were skipped over the run because their files could not be read", num_skipped)
        unpaired = getattr(self.objective, "num_unpaired", 0)
        if unpaired:
            logger.warning("%d clips lacking audio or video were left out of contrastive training", unpaired)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def train(cfg: TrainConfig, train_set: Dataset | None = None, eval_set: Dataset | None = None, vocab: LabelVocab | None = None) -> dict[str, Any]:
    """Run one training job (see :class:`Trainer`); returns the final eval metrics."""
    return Trainer(cfg, train_set, eval_set, vocab).fit()
