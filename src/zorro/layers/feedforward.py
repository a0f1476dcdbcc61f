"""Pre-norm GEGLU feed-forward block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zorro.layers.norm import LayerNorm


def ff_inner_dim(dim: int, mult: float) -> int:
    """Hidden width of the GEGLU feed-forward: ``int(dim * mult * 2 / 3)`` (keeps the
    parameter count of a plain ``mult``-times MLP)."""
    return int(dim * mult * 2 / 3)


class FeedForward(nn.Module):
    """``LN -> Linear(dim, 2*inner) -> GEGLU -> Linear(inner, dim)``, no biases.

    GEGLU multiplies the first half of the projection by GELU of the second half.
    Input and output ``(batch, n, dim)``; the residual is added by the caller.
    """

    def __init__(self, dim: int, mult: float = 4) -> None:
        super().__init__()
        inner = ff_inner_dim(dim, mult)
        self.norm = LayerNorm(dim)
        self.proj_in = nn.Linear(dim, inner * 2, bias=False)
        self.proj_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, n, dim) -> (b, n, dim)``."""
        value, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)  # (b, n, inner) each
        return self.proj_out(value * F.gelu(gate))
