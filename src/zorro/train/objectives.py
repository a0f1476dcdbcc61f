"""The two training objectives as modules that take a whole batch: supervised
classification on every output, and contrastive audio-visual pre-training.

Examples are grouped by the modalities they have *inside* the module, so a
``DistributedDataParallel`` wrapper sees one forward and one backward per micro-batch
however the batch is made up.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Mapping

import torch
from torch import nn

from zorro.audio import AudioFrontend
from zorro.augment import ClipAugment
from zorro.data import split_by_modality
from zorro.losses import ZorroContrastiveLoss, classification_loss, info_nce, mixup
from zorro.tasks import ZorroClassifier, ZorroPretrainer

__all__ = ["SupervisedObjective", "ContrastiveObjective", "build_augment"]


def build_augment(options: Mapping[str, Any]) -> ClipAugment:
    """A :class:`~zorro.augment.ClipAugment` from a config dict (lists become tuples);
    unknown keys raise ``ValueError``."""
    known = {f.name for f in fields(ClipAugment) if f.init}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown augment options {unknown}; known: {sorted(known)}")
    return ClipAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


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
    carrying ``audio_features`` (a :class:`~zorro.train.features.CachedClips` after :meth:`~zorro.train.features.CachedClips.add_audio_features`)
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
        self.trained_outputs: set[str] = set()  # outputs that got a training loss (the trainer drops heads that never did)

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
            if self.training:
                self.trained_outputs.update(logits)
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
