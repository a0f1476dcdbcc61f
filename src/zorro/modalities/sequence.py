"""The ``sequence`` modality kind: any pre-computed feature sequence ``(b, T, input_dim)``.

For signals that arrive as vectors per step (IMU readings, face or body landmarks, features
from another encoder): each step is one token, ``LayerNorm -> Linear -> LayerNorm`` like a
patch, plus a sine-cosine embedding of the step index. Variable lengths are padded with the
extra input ``<name>_mask`` ``(b, T)`` bool, True for real steps.
"""

from __future__ import annotations

from typing import Any

import torch

from zorro.layers.patch_embed import PatchEmbed
from zorro.modalities.base import ModalityTokens, PositionTable
from zorro.modalities.text import check_padding_mask

__all__ = ["SequenceTokenizer"]


class SequenceTokenizer(PatchEmbed):
    """``(b, T, input_dim)`` float -> ``(b, T, dim)`` tokens.

    Args:
        dim: model width ``D``.
        input_dim: features per step (required).
        pos_embed: ``"sincos"`` or ``"none"``.
    """

    def __init__(self, dim: int, *, input_dim: int, pos_embed: str = "sincos") -> None:
        if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
            raise ValueError(f"input_dim must be a positive int (features per step), got {input_dim!r}")
        super().__init__(input_dim, dim)
        self.input_dim = input_dim
        self.pos_embed = pos_embed
        self.positions = PositionTable(dim)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None) -> ModalityTokens:
        """``x (b, T, input_dim)`` (and ``mask (b, T)`` bool) -> tokens ``(b, T, D)``."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"a sequence input must be a float tensor (batch, steps, {self.input_dim}), got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.dim() != 3 or x.shape[2] != self.input_dim or x.shape[1] == 0:
            raise ValueError(f"a sequence input must have shape (batch, steps >= 1, {self.input_dim}), got {tuple(x.shape)}")
        mask = check_padding_mask(mask, tuple(x.shape[:2]), "the sequence's mask")
        tokens = self.embed(x)
        if self.pos_embed == "sincos":
            tokens = tokens + self.positions((x.shape[1],), tokens.device, tokens.dtype)
        return ModalityTokens(tokens, mask, (x.shape[1],))
