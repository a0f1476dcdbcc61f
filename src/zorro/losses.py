"""Training objectives for Zorro: contrastive (InfoNCE) and supervised (classification) losses.

Contrastive objective (:class:`ZorroContrastiveLoss`)
-----------------------------------------------------
Let ``z_1 ... z_M`` (``(B, P)``) be the L2-normalised projections of the model's modality
outputs (``z_A, z_V`` for the audio-video model) and ``z_F, z_G`` (``(B, M*P)``) those of the
fusion and global outputs (:class:`zorro.heads.ContrastiveHead`). The loss is::

    L = mean over pairs i < j of NCE(z_i, z_j) + w_F * NCE(z_F, u) + w_G * NCE(z_G, u),
    u = [z_1 ; ... ; z_M] / sqrt(M)

where ``NCE`` is the symmetric InfoNCE of :func:`info_nce` and ``u`` (unit norm, since every
``z_m`` is) is the concatenated unimodal embedding of each clip. With audio and video alone
this is ``NCE(z_A, z_V) + w_F NCE(z_F, u) + w_G NCE(z_G, u)`` with ``u = [z_A; z_V] / sqrt(2)``.

Why this objective for o_F and o_G: the pair terms are the cross-modal contrastive objectives
that Zorro's modality-pure outputs make possible (they would collapse if o_A could see the
video), and their positives carry the correspondence signal. The multimodal outputs have no
"other view" of their own, so they are asked to identify *their own clip* among the batch's
clips as described by the unimodal embeddings ``u`` (and vice versa). Because ``u`` is a
concatenation, ``cos(z_F, u) = sum_m z_F[m-th block] . z_m / sqrt(M)``: z_F must carry what
distinguishes the clip in *every* modality, i.e. it is trained to be a joint summary, which
is what the fusion/global outputs are for, with negatives from other clips preventing
collapse. By default ``u`` is detached (``detach_unimodal_targets=True``): the unimodal
projections and their space are then shaped by the pair terms only, so adding the multimodal
terms cannot degrade the unimodal embeddings through the projections; the multimodal terms
act as a distillation of the cross-modal space into o_F / o_G. The shared transformer still
receives gradients from every term.

Missing modalities: with ``present`` (which clip has which modality), a pair term uses only
the clips having both modalities of the pair, and ``u`` of a clip holds its present
modalities (the blocks of absent ones are zero, and ``u`` is divided by the square root of
the number present, so it stays unit norm). Nothing absent is ever compared: a clip missing
a caption contributes its audio-video pair and nothing about text.

Supervised objective
--------------------
:func:`classification_loss` sums, over the heads present, softmax cross-entropy (single
label, optional label smoothing, hard or soft targets) or sigmoid binary cross-entropy (multi
label). :func:`mixup` mixes a batch (all modalities with the same weights) and its targets.

Distributed training
--------------------
:func:`info_nce` gathers the negatives of every rank (with gradients) when
``torch.distributed`` is initialised with more than one process. Each rank computes the loss
of its own rows against the global batch, so the mean over ranks equals the single-process
loss on the global batch, and DDP's gradient averaging yields the single-process gradient.
Rows left out (``valid``) keep every rank's batch the same size, as the all-gather needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zorro.distributed import gather_with_grad as _gather_with_grad
from zorro.distributed import world as _distributed_world

__all__ = [
    "info_nce",
    "ZorroContrastiveLoss",
    "classification_loss",
    "mixup",
    "MixupOutput",
]


# --------------------------------------------------------------------------- helpers


def _as_scale(logit_scale: torch.Tensor | float, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1:
            raise ValueError(
                f"info_nce: logit_scale must be a scalar, got a tensor of shape {tuple(logit_scale.shape)}"
            )
        if not logit_scale.is_floating_point():
            raise TypeError(f"info_nce: logit_scale must be floating point, got {logit_scale.dtype}")
        if not bool((logit_scale.detach() > 0).all()):
            raise ValueError(f"info_nce: logit_scale must be > 0, got {logit_scale.item()}")
        return logit_scale.reshape(())
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float)):
        raise TypeError(f"info_nce: logit_scale must be a float or a 0-d tensor, got {type(logit_scale).__name__}")
    if not logit_scale > 0:
        raise ValueError(f"info_nce: logit_scale must be > 0, got {logit_scale}")
    return torch.tensor(float(logit_scale), dtype=ref.dtype, device=ref.device)


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what}: {name} must be a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{what}: {name} must be floating point, got {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{what}: {name} must have shape (B, P), got {tuple(x.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"{what}: a and b must have the same shape (B, P), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dtype != b.dtype:
        raise TypeError(f"{what}: a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    if a.shape[0] == 0:
        raise ValueError(f"{what}: empty batch (B = 0)")


# --------------------------------------------------------------------------- contrastive


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    gather: bool = True,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between two batches of paired, L2-normalised embeddings.

    With ``s = logit_scale`` and similarities ``S = s * a @ b_all.T``, the loss is
    ``0.5 * (CE(S, pos) + CE(s * b @ a_all.T, pos))`` where row ``i`` of ``a`` is paired
    with row ``i`` of ``b`` and the other rows are negatives. In nats, averaged over rows.

    When ``gather`` is true and ``torch.distributed`` is initialised with ``world_size > 1``,
    ``b_all``/``a_all`` are the embeddings of every rank (gathered with an autograd-aware
    all-gather, so gradients flow back to the rank that produced them) and the positive of
    local row ``i`` is global column ``rank * B + i``.
    Every rank must then pass the same batch size ``B``. The returned value is the local
    mean; its average over ranks equals the loss on the global batch, and DDP's gradient
    averaging reproduces the single-process gradient.

    Args:
        a: ``(B, P)`` float tensor, rows L2-normalised (not re-normalised here).
        b: ``(B, P)`` float tensor paired with ``a`` row by row, rows L2-normalised.
        logit_scale: multiplicative inverse temperature ``1 / tau`` (> 0), a float or a 0-d
            tensor (e.g. ``ContrastiveHead.logit_scale()``; gradients flow into it).
        gather: gather negatives across ranks when running distributed.
        valid: optional ``(B,)`` bool: the rows that take part (as queries, positives and
            negatives); the others are ignored. The loss is the mean over the valid rows
            (0 when there is none; with fewer than two valid rows in all, nothing is
            contrasted). None or all True: every row.

    Returns:
        0-d tensor, the loss in nats.

    Raises:
        ValueError: shapes differ or are not ``(B, P)``, empty batch, non-positive or
            non-scalar ``logit_scale``.
        TypeError: non-floating-point inputs, or ``a`` and ``b`` of different dtypes.
    """
    _check_pair(a, b, "info_nce")
    scale = _as_scale(logit_scale, a)
    rank, world = _distributed_world() if gather else (0, 1)
    if world > 1:
        a_all, b_all = _gather_with_grad(a), _gather_with_grad(b)
    else:
        a_all, b_all = a, b
    targets = torch.arange(a.shape[0], device=a.device) + rank * a.shape[0]
    if valid is not None:
        if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or valid.shape != (a.shape[0],):
            raise ValueError(f"info_nce: valid must be a ({a.shape[0]},) bool tensor, got {getattr(valid, 'shape', valid)!r}")
        valid_all = _gather_with_grad(valid) if world > 1 else valid
        if not bool(valid_all.all()):
            return _masked_info_nce(a, b, a_all, b_all, scale, targets, valid, valid_all)
    loss_ab = F.cross_entropy(scale * a @ b_all.T, targets)
    loss_ba = F.cross_entropy(scale * b @ a_all.T, targets)
    return 0.5 * (loss_ab + loss_ba)


def _masked_info_nce(a, b, a_all, b_all, scale, targets, valid, valid_all) -> torch.Tensor:
    """:func:`info_nce` over the valid rows only: invalid columns are excluded from the
    softmax and invalid rows from the mean (every rank keeps its full batch for the gather)."""
    if not bool(valid_all.any()):  # nothing to contrast anywhere: a zero that keeps the graph
        return (a.sum() + b.sum()) * 0.0
    excluded = (~valid_all)[None, :]
    weight = valid.to(a.dtype)
    count = weight.sum().clamp(min=1.0)
    loss_ab = F.cross_entropy((scale * a @ b_all.T).masked_fill(excluded, float("-inf")), targets, reduction="none")
    loss_ba = F.cross_entropy((scale * b @ a_all.T).masked_fill(excluded, float("-inf")), targets, reduction="none")
    # invalid rows may be all -inf apart from their own (also -inf) target: zero them before the sum
    per_row = torch.where(valid, loss_ab + loss_ba, torch.zeros_like(loss_ab))
    return 0.5 * per_row.sum() / count


class ZorroContrastiveLoss(nn.Module):
    """Zorro's self-supervised objective on the projected outputs (see the module docstring).

    ``total = mean_{i<j} NCE(z_i, z_j) + fusion_weight * NCE(z_F, u) + global_weight * NCE(z_G, u)``
    with ``u = [z_1; ...; z_M] / sqrt(M)`` over the modalities (detached when
    ``detach_unimodal_targets``). The fusion / global terms are skipped when those outputs are
    absent.

    Args:
        fusion_weight: weight ``w_F >= 0`` of the fusion term (0 disables it).
        global_weight: weight ``w_G >= 0`` of the global term (0 disables it).
        detach_unimodal_targets: stop gradients through ``u`` in the multimodal terms.
        gather: gather negatives across ranks under ``torch.distributed`` (see :func:`info_nce`).
        modalities: the modality outputs, in the order their blocks appear in ``u`` (the
            model's table order; at least two).
    """

    def __init__(
        self,
        *,
        fusion_weight: float = 1.0,
        global_weight: float = 1.0,
        detach_unimodal_targets: bool = True,
        gather: bool = True,
        modalities: Sequence[str] = ("audio", "video"),
    ) -> None:
        super().__init__()
        for arg, value in (("fusion_weight", fusion_weight), ("global_weight", global_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"ZorroContrastiveLoss: {arg} must be a finite float >= 0, got {value!r}")
        modalities = tuple(modalities)
        if len(modalities) < 2 or len(set(modalities)) != len(modalities) or not all(isinstance(m, str) for m in modalities):
            raise ValueError(f"ZorroContrastiveLoss: modalities must be at least two distinct names, got {modalities!r}")
        self.fusion_weight = float(fusion_weight)
        self.global_weight = float(global_weight)
        self.detach_unimodal_targets = bool(detach_unimodal_targets)
        self.gather = bool(gather)
        self.modalities = modalities

    @staticmethod
    def pair_name(first: str, second: str) -> str:
        """The name of a pair term in the logged parts: ``"audio_video"``."""
        return f"{first}_{second}"

    def forward(
        self,
        projections: Mapping[str, torch.Tensor],
        logit_scale: torch.Tensor | float,
        present: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Compute the contrastive loss.

        Args:
            projections: dict with a ``(B, P)`` unit-norm tensor for every one of
                ``modalities`` and optionally ``"fusion"`` / ``"global"`` ``(B, M*P)`` unit-norm
                tensors (the output of :class:`zorro.heads.ContrastiveHead`).
            logit_scale: inverse temperature ``1 / tau`` (float or 0-d tensor, > 0).
            present: optional ``name -> (B,)`` bool: which clips have each modality (rows of
                absent ones may hold anything and are never used). A clip with fewer than two
                modalities takes no part. None: every clip has every modality.

        Returns:
            ``(total, parts)``: ``total`` is a 0-d tensor (nats); ``parts`` maps every pair
            term (``"audio_video"``, ``"audio_text"``, ...), ``"fusion"``, ``"global"`` (the
            unweighted terms that were computed) and ``"total"`` to Python floats, for logging.

        Raises:
            ValueError: a modality's projection missing, or a multimodal projection whose
                width is not that of ``[z_1; ...; z_M]``.
        """
        if not isinstance(projections, Mapping):
            raise TypeError(
                "ZorroContrastiveLoss: expected a dict of name -> (B, P) projections, "
                f"got {type(projections).__name__}"
            )
        missing = [k for k in self.modalities if projections.get(k) is None]
        if missing:
            raise ValueError(
                f"ZorroContrastiveLoss: the contrastive loss needs a projection of every modality {list(self.modalities)}; "
                f"missing {missing} (keys: {sorted(projections)})"
            )
        zs = [projections[m] for m in self.modalities]
        batch = zs[0].shape[0]
        flags = None
        if present is not None:
            flags = [present.get(m) if present.get(m) is not None else torch.ones(batch, dtype=torch.bool, device=zs[0].device)
                     for m in self.modalities]
            for m, f in zip(self.modalities, flags):
                if f.dtype != torch.bool or f.shape != (batch,):
                    raise ValueError(f"ZorroContrastiveLoss: present[{m!r}] must be a ({batch},) bool tensor, got {tuple(f.shape)} {f.dtype}")
        parts: dict[str, torch.Tensor] = {}
        pair_terms = []
        for i in range(len(zs)):
            for j in range(i + 1, len(zs)):
                both = None if flags is None else flags[i] & flags[j]
                term = info_nce(zs[i], zs[j], logit_scale, gather=self.gather, valid=both)
                parts[self.pair_name(self.modalities[i], self.modalities[j])] = term
                pair_terms.append(term)
        total = pair_terms[0] if len(pair_terms) == 1 else torch.stack(pair_terms).mean()
        terms = (("fusion", self.fusion_weight), ("global", self.global_weight))
        if any(projections.get(n) is not None and w > 0 for n, w in terms):
            if flags is None or all(bool(f.all()) for f in flags):  # every clip has everything
                u = torch.cat(zs, dim=-1) / math.sqrt(len(zs))
                paired = None if flags is None else torch.ones_like(flags[0])
            else:
                count = torch.stack(flags, dim=1).sum(dim=1)  # (B,)
                u = torch.cat([z * f[:, None].to(z.dtype) for z, f in zip(zs, flags)], dim=-1)
                u = u / count.clamp(min=1).to(u.dtype).sqrt()[:, None]
                paired = count >= 2
            if self.detach_unimodal_targets:
                u = u.detach()
            for name, weight in terms:
                z = projections.get(name)
                if z is None or weight == 0:
                    continue
                if isinstance(z, torch.Tensor) and (z.ndim != 2 or z.shape != u.shape):
                    raise ValueError(
                        f"ZorroContrastiveLoss: projections[{name!r}] must have shape (B, M * P) "
                        f"= {tuple(u.shape)} to be contrasted with [z_1; ...; z_M], got {tuple(z.shape)}"
                    )
                term = info_nce(z, u, logit_scale, gather=self.gather, valid=paired)
                parts[name] = term
                total = total + weight * term
        out = {k: float(v.detach()) for k, v in parts.items()}
        out["total"] = float(total.detach())
        return total, out


# --------------------------------------------------------------------------- supervised


def _check_logits_dict(logits: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if not isinstance(logits, Mapping):
        raise TypeError(f"{what}: expected a dict of name -> (B, C) logits, got {type(logits).__name__}")
    present = {k: v for k, v in logits.items() if v is not None}
    if not present:
        raise ValueError(f"{what}: the logits dict has no head (keys: {sorted(logits)})")
    shape = None
    for k, v in present.items():
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            got = getattr(v, "dtype", type(v).__name__)
            raise TypeError(f"{what}: logits[{k!r}] must be a floating-point tensor, got {got}")
        if v.ndim != 2:
            raise ValueError(f"{what}: logits[{k!r}] must have shape (B, C), got {tuple(v.shape)}")
        if shape is None:
            shape = v.shape
        elif v.shape != shape:
            raise ValueError(
                f"{what}: logits[{k!r}] has shape {tuple(v.shape)}, expected {tuple(shape)} "
                "like the other heads"
            )
    return present


def classification_loss(
    logits: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    multi_label: bool,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the classification losses of every head present in ``logits``.

    Single label (``multi_label=False``): softmax cross-entropy, averaged over the batch,
    with ``label_smoothing`` as in :func:`torch.nn.functional.cross_entropy` (the target
    becomes ``(1 - eps) * y + eps / C``). Targets are class indices ``(B,)`` (int64) or
    soft targets ``(B, C)`` (float, rows summing to 1, e.g. from :func:`mixup`).

    Multi label (``multi_label=True``): sigmoid binary cross-entropy, averaged over batch and
    classes. Targets are ``(B, C)`` floats in ``[0, 1]``; label smoothing maps them to
    ``(1 - eps) * y + eps / 2``.

    Args:
        logits: dict head name -> ``(B, C)`` logits (all heads the same shape).
        targets: see above.
        multi_label: choose the multi-label (BCE) or single-label (CE) objective.
        label_smoothing: ``eps`` in ``[0, 1)``.

    Returns:
        ``(total, parts)``: ``total`` the 0-d sum over heads (nats); ``parts`` maps each head
        name and ``"total"`` to a Python float.

    Raises:
        ValueError: shape mismatch between logits and targets, class index out of range,
            targets outside ``[0, 1]``, bad ``label_smoothing``.
        TypeError: wrong target dtype.
    """
    present = _check_logits_dict(logits, "classification_loss")
    batch, num_classes = next(iter(present.values())).shape
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"classification_loss: targets must be a tensor, got {type(targets).__name__}")
    if not (isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing < 1.0):
        raise ValueError(f"classification_loss: label_smoothing must be in [0, 1), got {label_smoothing!r}")
    eps = float(label_smoothing)

    if multi_label:
        if not targets.is_floating_point():
            raise TypeError(
                f"classification_loss: multi-label targets must be a float (B, C) tensor of 0/1 "
                f"(or soft) labels, got dtype {targets.dtype}"
            )
        if targets.shape != (batch, num_classes):
            raise ValueError(
                f"classification_loss: multi-label targets must have shape (B, C) = {(batch, num_classes)}, "
                f"got {tuple(targets.shape)}"
            )
        if bool(((targets < 0) | (targets > 1)).any()):
            raise ValueError("classification_loss: multi-label targets must lie in [0, 1]")
        soft = targets * (1.0 - eps) + eps / 2.0 if eps > 0 else targets

        def head_loss(x: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy_with_logits(x, soft.to(x.dtype))

    else:
        if targets.is_floating_point():
            if targets.shape != (batch, num_classes):
                raise ValueError(
                    f"classification_loss: soft single-label targets must have shape (B, C) = "
                    f"{(batch, num_classes)}, got {tuple(targets.shape)}"
                )
        elif targets.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            if targets.shape != (batch,):
                raise ValueError(
                    f"classification_loss: class-index targets must have shape (B,) = ({batch},), "
                    f"got {tuple(targets.shape)}"
                )
            if batch and bool(((targets < 0) | (targets >= num_classes)).any()):
                raise ValueError(
                    f"classification_loss: class indices must be in [0, {num_classes}), got "
                    f"min {int(targets.min())}, max {int(targets.max())}"
                )
            targets = targets.long()
        else:
            raise TypeError(
                "classification_loss: single-label targets must be int class indices (B,) or "
                f"float soft targets (B, C), got dtype {targets.dtype}"
            )

        def head_loss(x: torch.Tensor) -> torch.Tensor:
            t = targets.to(x.dtype) if targets.is_floating_point() else targets
            return F.cross_entropy(x, t, label_smoothing=eps)

    parts_t = {name: head_loss(x) for name, x in present.items()}
    total = torch.stack(list(parts_t.values())).sum()
    parts = {k: float(v.detach()) for k, v in parts_t.items()}
    parts["total"] = float(total.detach())
    return total, parts


class MixupOutput(NamedTuple):
    """Result of :func:`mixup`.

    Attributes:
        inputs: the mixed inputs, in the order given (``None`` entries passed through).
        targets: ``(B, C)`` float soft targets.
        lam: the mixing weight ``lambda`` in ``[0, 1]`` of the original sample.
        permutation: ``(B,)`` int64 indices of the partner of each sample.
    """

    inputs: tuple[torch.Tensor | None, ...]
    targets: torch.Tensor
    lam: float
    permutation: torch.Tensor


def mixup(
    inputs: Sequence[torch.Tensor | None],
    targets: torch.Tensor,
    *,
    alpha: float,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> MixupOutput:
    """Mixup (Zhang et al., 2018) of a multimodal batch and its targets.

    Draws ``lambda ~ Beta(alpha, alpha)`` and a random permutation ``pi`` of the batch, then
    returns ``x' = lambda * x + (1 - lambda) * x[pi]`` for every input (the same ``lambda``
    and ``pi`` for all modalities, so a mixed clip stays audio-visually consistent) and
    ``y' = lambda * y + (1 - lambda) * y[pi]`` with ``y`` one-hot (single label) or the
    multi-hot target. Train single-label models on ``y'`` with soft-target cross-entropy
    (:func:`classification_loss` accepts float ``(B, C)`` targets).

    Args:
        inputs: sequence of float tensors with leading batch dimension ``B`` (e.g. audio
            ``(B, T)`` and video ``(B, C, F, H, W)``); ``None`` entries (absent modality) are
            passed through.
        targets: class indices ``(B,)`` (int; needs ``num_classes``) or ``(B, C)`` float targets.
        alpha: Beta concentration ``> 0``; ``alpha == 0`` disables mixing (``lambda = 1``).
        num_classes: number of classes, required for class-index targets.
        generator: torch generator for reproducibility (``None``: the global torch RNG).

    Returns:
        :class:`MixupOutput` ``(inputs, targets, lam, permutation)``.

    Raises:
        ValueError: negative ``alpha``, batch-size mismatch, missing/invalid ``num_classes``,
            class index out of range.
        TypeError: non-floating-point inputs or targets of an unsupported dtype.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"mixup: alpha must be a finite float >= 0, got {alpha!r}")
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, Sequence):
        raise TypeError(f"mixup: inputs must be a sequence (list/tuple) of tensors, got {type(inputs).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"mixup: targets must be a tensor, got {type(targets).__name__}")
    if targets.ndim == 0:
        raise ValueError("mixup: targets must have shape (B,) or (B, C), got a scalar")
    batch = targets.shape[0]
    for i, x in enumerate(inputs):
        if x is None:
            continue
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"mixup: inputs[{i}] must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}"
            )
        if x.ndim == 0 or x.shape[0] != batch:
            raise ValueError(
                f"mixup: inputs[{i}] must have leading batch dimension {batch} (that of targets), "
                f"got shape {tuple(x.shape)}"
            )

    if targets.is_floating_point():
        if targets.ndim != 2:
            raise ValueError(f"mixup: float targets must have shape (B, C), got {tuple(targets.shape)}")
        if num_classes is not None and targets.shape[1] != num_classes:
            raise ValueError(f"mixup: targets have {targets.shape[1]} classes, expected num_classes={num_classes}")
        y = targets
    elif targets.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        if targets.ndim != 1:
            raise ValueError(f"mixup: class-index targets must have shape (B,), got {tuple(targets.shape)}")
        if not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"mixup: class-index targets need num_classes (a positive int), got {num_classes!r}")
        if batch and bool(((targets < 0) | (targets >= num_classes)).any()):
            raise ValueError(f"mixup: class indices must be in [0, {num_classes})")
        y = F.one_hot(targets.long(), num_classes).float()
    else:
        raise TypeError(f"mixup: targets must be int class indices or float (B, C), got dtype {targets.dtype}")

    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(batch, generator=generator, device=device).to(y.device)
    if alpha == 0:
        lam = 1.0
    else:
        # torch's Beta sampler takes no generator: derive a numpy seed from the torch one.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))

    def mix(x: torch.Tensor) -> torch.Tensor:
        p = perm.to(x.device)
        return lam * x + (1.0 - lam) * x[p]

    mixed = tuple(None if x is None else mix(x) for x in inputs)
    return MixupOutput(mixed, mix(y), lam, perm)
