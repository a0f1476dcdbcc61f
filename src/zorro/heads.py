"""Training heads that sit on top of Zorro's pooled outputs.

The Zorro model returns, per clip, pooled embeddings of width ``dim`` by name: one per
modality (``audio``, ``video``, ``text``, ...) and ``fusion`` and ``global``::

    {"audio": (B, D), "video": (B, D), "fusion": (B, D), "global": (B, D)}

(keys are missing when the corresponding input modality is absent). This module turns
them into what the losses in :mod:`zorro.losses` consume:

* :class:`ContrastiveHead` projects each output into a shared, L2-normalised space and owns
  the (learnable or fixed) InfoNCE temperature.
* :class:`ClassifierHeads` puts one ``LayerNorm + Linear`` classifier on each output;
  :func:`average_logits` averages the logits of the heads that are present (the
  "ensemble" prediction reported at evaluation time).

Nothing here imports the model: the heads only see embedding dictionaries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from zorro.distributed import gather_with_grad
from zorro.tokens import TokenTypes

__all__ = [
    "OUTPUT_NAMES",
    "UNIMODAL_NAMES",
    "MULTIMODAL_NAMES",
    "BatchStandardize",
    "ContrastiveHead",
    "ClassifierHeads",
    "average_logits",
]

#: Names of the four pooled outputs, in :class:`~zorro.tokens.TokenTypes` order.
OUTPUT_NAMES: tuple[str, ...] = tuple(t.name.lower() for t in TokenTypes)
#: The audio-video model's outputs that only see one modality (o_A, o_V); any output not in
#: :data:`MULTIMODAL_NAMES` is a modality's own.
UNIMODAL_NAMES: tuple[str, ...] = (TokenTypes.AUDIO.name.lower(), TokenTypes.VIDEO.name.lower())
#: Outputs that see every modality (o_F, o_G).
MULTIMODAL_NAMES: tuple[str, ...] = (TokenTypes.FUSION.name.lower(), TokenTypes.GLOBAL.name.lower())


def _check_names(names: Iterable[str], what: str) -> tuple[str, ...]:
    names = tuple(names)
    if not names:
        raise ValueError(f"{what}: expected at least one output name, got none")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{what}: output names must be str, got {type(name).__name__}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: output names must be unique, got {names}")
    return names


def _check_embeddings(
    embeddings: Mapping[str, torch.Tensor], names: tuple[str, ...], dim: int, what: str
) -> list[str]:
    """Return the names of ``names`` present in ``embeddings`` after validating their shapes."""
    if not isinstance(embeddings, Mapping):
        raise TypeError(
            f"{what}: expected a dict of name -> (B, {dim}) tensors, got {type(embeddings).__name__}"
        )
    present = [n for n in names if n in embeddings and embeddings[n] is not None]
    if not present:
        raise ValueError(
            f"{what}: none of the expected outputs {names} is in the embeddings dict "
            f"(keys: {sorted(embeddings)})"
        )
    batch = None
    for name in present:
        x = embeddings[name]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what}: embeddings[{name!r}] must be a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{what}: embeddings[{name!r}] must be floating point, got {x.dtype}")
        if x.ndim != 2 or x.shape[1] != dim:
            raise ValueError(
                f"{what}: embeddings[{name!r}] must have shape (B, {dim}), got {tuple(x.shape)}"
            )
        if batch is None:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            raise ValueError(
                f"{what}: all embeddings must share the batch size; embeddings[{name!r}] has "
                f"{x.shape[0]} rows, expected {batch}"
            )
    return present


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 if it is fp16/bf16 (autocast outputs), unchanged otherwise."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class BatchStandardize(nn.Module):
    """Standardise features over the batch, over all ranks: a synchronised, affine-free BatchNorm.

    In training, every feature is centred and scaled by the mean and (biased) variance of the
    *global* batch (gathered from all ranks under ``torch.distributed``, with gradients), so
    ``W`` processes with ``B / W`` examples compute what one process with ``B`` does; running
    estimates (updated with ``momentum``, unbiased variance, like ``nn.BatchNorm1d``) are used
    in eval mode. Statistics are computed in fp32 (fp64 input stays fp64).

    Why the contrastive head needs it: at initialisation a transformer's pooled outputs are
    nearly the same vector for every clip (cosine 0.97-0.99 across a batch), and InfoNCE's
    gradient with respect to an embedding is a difference of embeddings, so it nearly
    vanishes. Removing the batch's common part restores it (a batch of 64 AV-digits clips:
    the audio-video loss stays at ln 64 for 50 steps without it, and falls to 1.1 in 20
    steps with it).

    Args:
        dim: number of features ``D``.
        momentum: weight of the current batch in the running estimates, in (0, 1].
        eps: added to the variance before the square root (> 0).
    """

    def __init__(self, dim: int, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"BatchStandardize: dim must be a positive int, got {dim!r}")
        if not 0.0 < momentum <= 1.0 or not eps > 0:
            raise ValueError(f"BatchStandardize: need 0 < momentum <= 1 and eps > 0, got {momentum}, {eps}")
        self.dim, self.momentum, self.eps = dim, float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, D) -> (B, D)``, standardised per feature (bf16/fp16 input gives fp32).

        ``valid`` (``(B,)`` bool, optional): only these rows enter the training statistics
        (rows of clips lacking the modality); every row is standardised with them.
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"BatchStandardize: expected (B, {self.dim}), got {tuple(x.shape)}")
        x = _at_least_fp32(x)
        if not self.training:
            return (x - self.running_mean.to(x.dtype)) * torch.rsqrt(self.running_var.to(x.dtype) + self.eps)
        everyone = gather_with_grad(x)
        weight = None if valid is None else gather_with_grad(valid.to(x.dtype))[:, None]  # (W*B, 1), the same on every rank
        if weight is not None and not bool((weight > 0).all()):
            n = int(weight.sum())
            mean = (everyone * weight).sum(dim=0) / max(n, 1)
            var = ((everyone - mean) ** 2 * weight).sum(dim=0) / max(n, 1)
        else:
            n = everyone.shape[0]
            mean = everyone.mean(dim=0)
            var = everyone.var(dim=0, unbiased=False)
        with torch.no_grad():
            unbiased = var * (n / (n - 1)) if n > 1 else var
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        return (x - mean) * torch.rsqrt(var + self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, momentum={self.momentum}, eps={self.eps}"


def _projection(dim: int, out_dim: int, hidden_dim: int | None, batch_norm: bool) -> nn.Module:
    layers: list[nn.Module] = [BatchStandardize(dim)] if batch_norm else []
    if hidden_dim is None:
        layers.append(nn.Linear(dim, out_dim))
    else:
        layers += [nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)]
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def _project(projection: nn.Module, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Run a projection; its batch standardisation (first layer, if any) takes ``valid``."""
    if isinstance(projection, BatchStandardize):
        return projection(x, valid)
    if isinstance(projection, nn.Sequential) and isinstance(projection[0], BatchStandardize):
        x = projection[0](x, valid)
        for layer in list(projection)[1:]:
            x = layer(x)
        return x
    return projection(x)


class ContrastiveHead(nn.Module):
    """Per-output projection to an L2-normalised contrastive space, plus the temperature.

    Each output name gets its own projection: a :class:`BatchStandardize` (unless
    ``batch_norm=False``) followed by a linear layer, or by a 2-layer GELU MLP when
    ``hidden_dim`` is given. Unimodal outputs (``audio``, ``video``, any modality's) are
    projected to ``proj_dim``; multimodal outputs (``fusion``, ``global``) are projected to
    ``multimodal_proj_dim`` (default ``num_modalities * proj_dim``) so that they can be
    contrasted with the concatenation ``[z_1; ...; z_M]`` of the unimodal projections
    (see :class:`zorro.losses.ZorroContrastiveLoss`).

    The temperature ``tau`` is stored as ``log(1 / tau)`` (the CLIP "logit scale"):

    * learnable (default): initialised to ``log(1 / init_temperature)`` (``1/0.07``) and
      clamped to ``<= log(max_logit_scale)`` (``100``) when read through
      :meth:`logit_scale`. Call :meth:`clamp_logit_scale_` after each optimiser step to
      also clamp the stored parameter, as CLIP does.
    * fixed: pass ``fixed_temperature`` (e.g. ``0.05`` as in CAV-MAE); it is stored as a
      buffer and never trained.

    Args:
        dim: width ``D`` of the model outputs.
        proj_dim: width ``P`` of the unimodal projections.
        hidden_dim: hidden width of the projection MLP; ``None`` for a single linear layer.
        names: output names to build projections for.
        multimodal_proj_dim: width of the projections of ``fusion``/``global``
            (default ``num_modalities * proj_dim``).
        num_modalities: how many unimodal projections the multimodal ones are contrasted
            with (2: audio and video).
        init_temperature: initial temperature of the learnable scale (dimensionless, > 0).
        max_logit_scale: upper bound of the logit scale ``1 / tau`` (> 0).
        fixed_temperature: if given, use this constant temperature instead of a learnable one.
        batch_norm: standardise each output over the global batch before projecting it
            (see :class:`BatchStandardize`; without it, training from scratch can sit at
            ``ln B`` for hundreds of steps).
    """

    def __init__(
        self,
        dim: int,
        proj_dim: int = 256,
        *,
        hidden_dim: int | None = None,
        names: Iterable[str] = OUTPUT_NAMES,
        multimodal_proj_dim: int | None = None,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
        fixed_temperature: float | None = None,
        batch_norm: bool = True,
        num_modalities: int = 2,
    ) -> None:
        super().__init__()
        for arg, value in (("dim", dim), ("proj_dim", proj_dim), ("num_modalities", num_modalities)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ContrastiveHead: {arg} must be a positive int, got {value!r}")
        if hidden_dim is not None and (not isinstance(hidden_dim, int) or hidden_dim <= 0):
            raise ValueError(
                f"ContrastiveHead: hidden_dim must be None or a positive int, got {hidden_dim!r}"
            )
        if multimodal_proj_dim is None:
            multimodal_proj_dim = num_modalities * proj_dim
        if not isinstance(multimodal_proj_dim, int) or multimodal_proj_dim <= 0:
            raise ValueError(
                "ContrastiveHead: multimodal_proj_dim must be a positive int, "
                f"got {multimodal_proj_dim!r}"
            )
        if not max_logit_scale > 0:
            raise ValueError(f"ContrastiveHead: max_logit_scale must be > 0, got {max_logit_scale}")
        self.names = _check_names(names, "ContrastiveHead")
        self.dim = dim
        self.proj_dim = proj_dim
        self.multimodal_proj_dim = multimodal_proj_dim
        self.max_logit_scale = float(max_logit_scale)
        self.projections = nn.ModuleDict(
            {
                name: _projection(
                    dim, multimodal_proj_dim if name in MULTIMODAL_NAMES else proj_dim, hidden_dim, bool(batch_norm)
                )
                for name in self.names
            }
        )
        if fixed_temperature is not None:
            if not fixed_temperature > 0:
                raise ValueError(
                    f"ContrastiveHead: fixed_temperature must be > 0, got {fixed_temperature}"
                )
            self.learnable_temperature = False
            self.register_buffer(
                "log_logit_scale", torch.tensor(math.log(1.0 / fixed_temperature)), persistent=True
            )
        else:
            if not init_temperature > 0:
                raise ValueError(
                    f"ContrastiveHead: init_temperature must be > 0, got {init_temperature}"
                )
            self.learnable_temperature = True
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))

    def logit_scale(self) -> torch.Tensor:
        """The multiplicative logit scale ``1 / tau``: a 0-d tensor, clamped to ``<= max_logit_scale``.

        Differentiable with respect to the stored log-scale while it is within the clamp
        range (boundary included); when the stored value exceeds the bound the gradient is 0.
        A fixed temperature is returned without the clamp.
        """
        if not self.learnable_temperature:
            return self.log_logit_scale.exp()
        return self.log_logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()

    @property
    def temperature(self) -> float:
        """The current temperature ``tau = 1 / logit_scale`` as a Python float."""
        return float(1.0 / self.logit_scale().detach())

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the stored log-scale in place to ``<= log(max_logit_scale)`` (CLIP-style).

        Call it after ``optimizer.step()``; a no-op for a fixed temperature.
        """
        if self.learnable_temperature:
            self.log_logit_scale.clamp_(max=math.log(self.max_logit_scale))

    def forward(self, embeddings: Mapping[str, torch.Tensor],
                valid: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Project and L2-normalise every output present in ``embeddings``.

        Args:
            embeddings: dict name -> ``(B, dim)`` float tensor; names not handled by this head
                are ignored and missing names are skipped.
            valid: optional name -> ``(B,)`` bool: the rows that hold a real output of that
                name (the others, of clips lacking it, are left out of the batch statistics).

        Returns:
            dict name -> ``(B, P_name)`` unit-norm tensor (``P = proj_dim`` for unimodal
            outputs, ``multimodal_proj_dim`` for ``fusion``/``global``).

        Raises:
            ValueError: no handled output present, wrong shape, or inconsistent batch sizes.
            TypeError: non-tensor or non-floating-point embedding.
        """
        present = _check_embeddings(embeddings, self.names, self.dim, "ContrastiveHead")
        out = {}
        for name in present:
            z = _project(self.projections[name], embeddings[name], None if valid is None else valid.get(name))
            out[name] = F.normalize(_at_least_fp32(z), dim=-1)
        return out

    def extra_repr(self) -> str:
        kind = "learnable" if self.learnable_temperature else "fixed"
        return f"names={self.names}, temperature={kind}, max_logit_scale={self.max_logit_scale}"


class ClassifierHeads(nn.Module):
    """One ``LayerNorm + Linear`` classifier per Zorro output.

    Args:
        dim: width ``D`` of the model outputs.
        num_classes: number of classes ``C``.
        names: output names to build a classifier for (default: all four outputs).
        dropout: dropout probability applied after the LayerNorm (0 disables it).
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        names: Iterable[str] = OUTPUT_NAMES,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for arg, value in (("dim", dim), ("num_classes", num_classes)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ClassifierHeads: {arg} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ClassifierHeads: dropout must be in [0, 1), got {dropout}")
        self.names = _check_names(names, "ClassifierHeads")
        self.dim = dim
        self.num_classes = num_classes
        self.heads = nn.ModuleDict(
            {
                name: nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, num_classes))
                for name in self.names
            }
        )
        for head in self.heads.values():
            linear = head[-1]
            nn.init.trunc_normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, embeddings: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Classify every output present in ``embeddings``.

        Args:
            embeddings: dict name -> ``(B, dim)`` float tensor; names without a head are
                ignored and missing names are skipped.

        Returns:
            dict name -> ``(B, num_classes)`` logits (unnormalised), one entry per present head.

        Raises:
            ValueError: no head's output present, wrong shape, or inconsistent batch sizes.
            TypeError: non-tensor or non-floating-point embedding.
        """
        present = _check_embeddings(embeddings, self.names, self.dim, "ClassifierHeads")
        return {name: self.heads[name](embeddings[name]) for name in present}

    def extra_repr(self) -> str:
        return f"names={self.names}, num_classes={self.num_classes}"


def average_logits(
    logits: Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> torch.Tensor:
    """Average the logits of the heads that are present.

    Args:
        logits: dict name -> ``(B, C)`` logits (e.g. the output of :class:`ClassifierHeads`).
        names: restrict the average to these names (those missing from ``logits`` are
            skipped); ``None`` averages every entry.

    Returns:
        ``(B, C)`` tensor: the arithmetic mean of the present heads' logits.

    Raises:
        ValueError: no head to average, or the heads' shapes differ.
        TypeError: ``logits`` is not a dict of tensors.
    """
    if not isinstance(logits, Mapping):
        raise TypeError(
            f"average_logits: expected a dict of name -> (B, C) logits, got {type(logits).__name__}"
        )
    keys = list(logits) if names is None else [n for n in names if n in logits]
    pairs = [(k, logits[k]) for k in keys if logits[k] is not None]
    if not pairs:
        raise ValueError(f"average_logits: no logits to average (keys: {sorted(logits)}, names: {names})")
    tensors = [t for _, t in pairs]
    for k, t in pairs:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"average_logits: logits[{k!r}] must be a tensor, got {type(t).__name__}")
        if t.ndim != 2 or t.shape != tensors[0].shape:
            raise ValueError(
                f"average_logits: logits[{k!r}] has shape {tuple(t.shape)}, expected "
                f"(B, C) = {tuple(tensors[0].shape)} like the first head"
            )
    return torch.stack(tensors).mean(dim=0)
