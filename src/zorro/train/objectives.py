"""The two training objectives as modules that take a whole batch: supervised
classification on every output, and contrastive pre-training across the modalities.

Examples are grouped by the modalities they have *inside* the module, so a
``DistributedDataParallel`` wrapper sees one forward and one backward per micro-batch
however the batch is made up. Augmentation (:class:`~zorro.augment.ClipAugment`) applies to
the modalities named ``audio`` and ``video``; other modalities (text, feature sequences)
are used as they come.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any, Mapping

import torch
from torch import nn

from zorro.audio import AudioFrontend
from zorro.augment import ClipAugment
from zorro.data import modality_inputs, split_by_modality
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
        """Mean loss over the batch (0-d tensor) and its parts per head (floats).

        Mixup (``mixup_alpha > 0``) mixes the audio, the video and every fixed-length
        feature sequence with the same weights; text ids and padded sequences cannot be
        mixed and are those of the first clip of each mixed pair."""
        total_n = len(batch["label"])
        loss, parts = None, {}
        backbone = self.task.backbone
        frontend = backbone.audio_frontend
        names = backbone.modality_names
        for group in split_by_modality(dict(batch), [m for m in names if f"has_{m}" in batch]):
            inputs = modality_inputs(group, names)
            audio, video, target = inputs.pop("audio", None), inputs.pop("video", None), group["label"]
            feats = group.get("audio_features") if self.training and self.uses_audio_features else None
            if audio is None:
                feats = None
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
                mixable = [k for k, v in inputs.items() if v.is_floating_point() and f"{k}_mask" not in inputs]
                first = feats if feats is not None else audio  # (fbank domain) mixes the raw log-mel features
                (first, video, *extra), target, _, _ = mixup([first, video, *(inputs[k] for k in mixable)], target,
                                                             alpha=self.mixup_alpha, num_classes=num_classes)
                inputs.update(zip(mixable, extra))
                feats, audio = (first, None) if feats is not None else (None, first)
            logits = self.task(audio=audio, video=video, audio_features=feats, **inputs)
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


def _presence(batch: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``name -> (B,)`` bool: which clips of the batch have each modality (False when the
    batch does not describe it)."""
    size = len(batch["label"])
    out = {}
    for m in names:
        flag = batch.get(f"has_{m}")
        out[m] = flag if flag is not None else torch.zeros(size, dtype=torch.bool)
    return out


def _encode_by_presence(backbone, batch: dict[str, Any], names: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The backbone's embeddings of every clip of ``batch`` from the modalities it has:
    ``(embeddings name -> (B, D), valid name -> (B,) bool)``. Clips are encoded in groups
    that share their modalities (one call when they all do); rows of an output a clip lacks
    are zero and not valid."""
    size = len(batch["label"])
    groups = list(split_by_modality(batch, names))

    def run(group: dict[str, Any]) -> dict[str, torch.Tensor]:
        inputs = modality_inputs(group, names)
        if group.get("audio_features") is not None:  # features (cached, or augmented views) replace the waveforms
            inputs.pop("audio", None)
            inputs["audio_features"] = group["audio_features"]
        return backbone.encode(**inputs).embeddings

    if len(groups) == 1 and len(groups[0]["batch_index"]) == size:
        embeddings = run(groups[0])
        ones = torch.ones(size, dtype=torch.bool, device=next(iter(embeddings.values())).device)
        return embeddings, {name: ones for name in embeddings}
    embeddings: dict[str, torch.Tensor] = {}
    valid: dict[str, torch.Tensor] = {}
    for group in groups:
        index = group["batch_index"]
        for name, x in run(group).items():
            if name not in embeddings:
                embeddings[name] = x.new_zeros(size, x.shape[1])
                valid[name] = torch.zeros(size, dtype=torch.bool, device=x.device)
            index = index.to(x.device)
            embeddings[name] = embeddings[name].index_copy(0, index, x)
            valid[name] = valid[name].index_fill(0, index, True)
    return embeddings, valid


def _rows(batch: Mapping[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The batch restricted to the clips where ``keep`` (``(B,)`` bool) is True."""
    size = len(batch["label"])
    idx = keep.nonzero().flatten()
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
            out[key] = value[idx.to(value.device)]
        elif isinstance(value, list) and len(value) == size:
            out[key] = [value[i] for i in idx.tolist()]
        else:
            out[key] = value
    return out


class ContrastiveObjective(nn.Module):
    """Symmetric InfoNCE between every pair of modality outputs (o_A and o_V for the
    audio-video model) plus the fusion/global terms (:class:`zorro.losses.ZorroContrastiveLoss`).
    Clips with fewer than two of the modalities are left out (counted in ``num_unpaired``);
    a clip missing one modality (a caption, say) takes part in the pairs it has.

    With ``intra_weight > 0`` (or ``cross_view``) every clip is seen as two augmented views
    (:class:`zorro.augment.ClipAugment`, one forward over the ``2B`` clips): the loss is the
    mean of the two views' losses plus ``intra_weight`` times the audio-audio and
    video-video InfoNCE between the views. With ``cross_view`` each pair term is the mean
    over all four pairings of the views (audio of view 1 with video of view 1 and of view 2,
    and so on) instead of the two same-view pairings: the pairs then differ in both
    modalities' nuisances, at no extra forward cost. Only audio and video are augmented;
    other modalities are the same in both views.

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
        self.loss = ZorroContrastiveLoss(fusion_weight=fusion_weight, global_weight=global_weight, modalities=task.modalities)
        self.intra_weight = float(intra_weight)
        self.cross_view = cross_view
        self.augment = augment if augment is not None else ClipAugment()
        self.num_unpaired = 0

    @property
    def uses_audio_features(self) -> bool:
        """Whether batches are better fed as front-end features than waveforms (audio
        augmented in the fbank domain, or not augmented at all)."""
        return self.augment.audio_domain == "fbank" or (self.intra_weight == 0 and not self.cross_view)

    def _project(self, batch: dict[str, Any], names: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Projections ``name -> (N, P)`` of the batch's clips and where they are real."""
        embeddings, valid = _encode_by_presence(self.task.backbone, batch, names)
        everything = all(bool(v.all()) for v in valid.values())
        return self.task.head(embeddings, None if everything else valid), valid

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean contrastive loss over the clips of the batch that have two modalities or more, and its parts."""
        names = self.task.modalities
        present = _presence(batch, names)
        paired = torch.stack(list(present.values()), dim=1).sum(dim=1) >= 2
        if not bool(paired.any()):
            raise ValueError(f"contrastive pre-training needs clips with at least two of the modalities {list(names)}; "
                             f"this batch has none")
        batch = dict(batch)
        if not bool(paired.all()):
            self.num_unpaired += int((~paired).sum())
            batch = _rows(batch, paired)
            present = _presence(batch, names)
        frontend = self.task.backbone.audio_frontend
        audio, video = batch.get("audio"), batch.get("video")
        feats = batch.get("audio_features")
        if self.intra_weight == 0 and not self.cross_view:
            if feats is not None:
                batch["audio"] = None  # the features replace the waveforms
            proj, valid = self._project(batch, names)
            scale = self.task.head.logit_scale()
            loss, parts = self.loss(proj, scale, present)
        else:
            b = len(batch["label"])
            views = {k: (torch.cat([v, v]) if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == b else
                         (v + v if isinstance(v, list) and len(v) == b else v)) for k, v in batch.items()}
            views["audio"] = views["audio_features"] = None
            if audio is not None and self.augment.audio_domain == "fbank":
                feats = _features_or_analyse(feats, audio, frontend)  # once for both views
                views["audio_features"] = torch.cat([self.augment.fbank(feats, frontend), self.augment.fbank(feats, frontend)])
            elif audio is not None:
                views["audio"] = torch.cat([self.augment.audio(audio), self.augment.audio(audio)])
            if video is not None:
                views["video"] = torch.cat([self.augment.video(video), self.augment.video(video)])
            proj, _ = self._project(views, names)
            scale = self.task.head.logit_scale()
            first = {k: v[:b] for k, v in proj.items()}
            second = {k: v[b:] for k, v in proj.items()}
            loss_1, parts_1 = self.loss(first, scale, present)
            loss_2, parts_2 = self.loss(second, scale, present)
            loss = 0.5 * (loss_1 + loss_2)
            parts = {k: 0.5 * (parts_1[k] + parts_2[k]) for k in parts_1 if k != "total"}
            intra = [(m, info_nce(first[m], second[m], scale, valid=present[m])) for m in ("audio", "video") if m in names]
            loss = loss + self.intra_weight * sum(term for _, term in intra)
            if self.cross_view:  # swap half of each pair term's weight from the same-view to the cross-view pairings
                changes = []
                for i, a in enumerate(names):
                    for c in names[i + 1:]:
                        both = present[a] & present[c]
                        same = 0.5 * (info_nce(first[a], first[c], scale, valid=both) + info_nce(second[a], second[c], scale, valid=both))
                        cross = 0.5 * (info_nce(first[a], second[c], scale, valid=both) + info_nce(second[a], first[c], scale, valid=both))
                        changes.append(cross - same)
                        parts[f"{self.loss.pair_name(a, c)}_cross"] = float(cross.detach())
                loss = loss + 0.5 * (changes[0] if len(changes) == 1 else torch.stack(changes).mean())
            parts.update({f"{m}_{m}": float(term.detach()) for m, term in intra})
            parts["total"] = float(loss.detach())
        parts["temperature"] = float(1.0 / scale.detach())
        return loss, parts
