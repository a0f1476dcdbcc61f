"""Normalisation layers."""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm over the last dimension with a learned gain and no bias.

    The seed keeps a bias fixed at zero (a buffer); a bias-free LayerNorm is the same
    function with one tensor fewer. Input ``(..., dim)`` -> output ``(..., dim)``.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__(dim, eps=eps, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 - same as nn.LayerNorm
        return super().forward(x)
