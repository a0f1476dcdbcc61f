"""What every modality kind shares: the tokens it hands the transformer, and how the model
finds a kind's extra inputs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from zorro.layers.pos_embed import sincos_grid

__all__ = ["ModalityTokens", "PositionTable", "extra_input_names"]


@dataclass
class ModalityTokens:
    """One modality's tokens, as a tokenizer module returns them.

    Attributes:
        tokens: ``(b, n, D)`` embeddings, positions already added.
        mask: ``(b, n)`` bool, True for real tokens and False for padding; None when every
            token is real.
        grid: the token grid's shape (``(F, T)`` audio patches, ``(T, H, W)`` tubelets,
            ``(L,)`` for a sequence), or None.
    """

    tokens: torch.Tensor
    mask: torch.Tensor | None = None
    grid: tuple[int, ...] | None = None


def extra_input_names(tokenizer: nn.Module) -> tuple[str, ...]:
    """The keyword-only parameters of ``tokenizer.forward``: the suffixes of the extra inputs
    the model passes it (``mask`` for ``<name>_mask``, ``features`` for ``<name>_features``)."""
    params = inspect.signature(tokenizer.forward).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


class PositionTable:
    """Sine-cosine position tables (:func:`~zorro.layers.pos_embed.sincos_grid`) kept per
    grid, device and dtype, so a model called on inputs of the same size builds each table
    once. While ``torch.compile`` traces, the table is computed in the graph instead (the
    compiler folds it into a constant)."""

    def __init__(self, dim: int, max_entries: int = 16) -> None:
        self.dim = dim
        self.max_entries = max_entries
        self._tables: dict[tuple, torch.Tensor] = {}

    def __call__(self, grid: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``(prod(grid), dim)`` table in ``dtype`` on ``device``."""
        if torch.compiler.is_compiling():
            return sincos_grid(grid, self.dim, device=device).to(dtype)
        key = (tuple(grid), str(device), dtype)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= self.max_entries:
                self._tables.pop(next(iter(self._tables)))
            with torch.inference_mode(False):  # a table made under inference_mode could not be reused in training
                table = self._tables[key] = sincos_grid(grid, self.dim, device=device).to(dtype)
        return table
