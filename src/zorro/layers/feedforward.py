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


class _Geglu(torch.autograd.Function):
    """``value * gelu(gate)`` of ``h = [value | gate]`` that saves only ``h`` for backward.

    Autograd of the plain expression keeps ``h``, ``gelu(gate)`` and the product alive; the
    product is kept by the next linear layer anyway, so this saves one ``(b, n, inner)``
    tensor per layer in training. Forward and gradients are the same arithmetic
    (``gelu_backward`` of the exact GELU).
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor) -> torch.Tensor:  # noqa: D102
        value, gate = h.chunk(2, dim=-1)
        ctx.save_for_backward(h)
        return value * F.gelu(gate)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (h,) = ctx.saved_tensors
        value, gate = h.chunk(2, dim=-1)
        grad_value = grad * F.gelu(gate)
        grad_gate = torch.ops.aten.gelu_backward(grad * value, gate)
        return torch.cat([grad_value, grad_gate], dim=-1)


def geglu(h: torch.Tensor) -> torch.Tensor:
    """GEGLU: first half of ``h (..., 2 * inner)`` times GELU of the second half -> ``(..., inner)``.

    Uses the memory-saving autograd function when a gradient is needed, the plain
    expression otherwise.
    """
    if torch.is_grad_enabled() and h.requires_grad:
        return _Geglu.apply(h)
    value, gate = h.chunk(2, dim=-1)
    return value * F.gelu(gate)


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
        return self.proj_out(geglu(self.proj_in(self.norm(x))))  # GEGLU: (b, n, 2 inner) -> (b, n, inner)
