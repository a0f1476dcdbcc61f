"""The ``text`` modality kind: token ids ``(b, L)`` -> embeddings with positions.

Ids come from :class:`zorro.tokenizer.ByteTokenizer` by default (``vocab_size`` 259) or from
any tokenizer whose vocabulary size is given. Variable lengths are padded, with the extra
input ``<name>_mask`` ``(b, L)`` bool, True for real ids: padded ids neither attend nor are
attended to and are left out of pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zorro.modalities.base import ModalityTokens, PositionTable
from zorro.tokenizer import ByteTokenizer

__all__ = ["TextTokenizer", "TEXT_OPTIONS", "check_padding_mask"]

#: Options of the text kind: the number of distinct ids.
TEXT_OPTIONS: dict[str, Any] = {"vocab_size": ByteTokenizer.vocab_size}


def check_padding_mask(mask: Any, shape: tuple[int, int], what: str) -> torch.Tensor | None:
    """Validate an optional padding mask: None, or a ``shape`` ``(b, L)`` bool tensor."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{what} must be a bool tensor (True for real tokens), got {getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{what} must have shape {tuple(shape)} (batch, length) like its input, got {tuple(mask.shape)}")
    return mask


class TextTokenizer(nn.Module):
    """``(b, L)`` int64 ids -> ``(b, L, dim)``: an embedding table, LayerNorm, and a sine-cosine
    embedding of the position (``pos_embed="sincos"``).

    Args:
        dim: model width ``D``.
        pos_embed: ``"sincos"`` or ``"none"``.
        vocab_size: ids run over ``[0, vocab_size)``.
    """

    def __init__(self, dim: int, *, pos_embed: str = "sincos", vocab_size: int = ByteTokenizer.vocab_size) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, dim)
        self.norm = nn.LayerNorm(dim)
        self.pos_embed = pos_embed
        self.positions = PositionTable(dim)

    def forward(self, ids: torch.Tensor, *, mask: torch.Tensor | None = None) -> ModalityTokens:
        """``ids (b, L)`` int64 (and ``mask (b, L)`` bool) -> tokens ``(b, L, D)``."""
        if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"text must be an int64 tensor of token ids (batch, length), got {getattr(ids, 'dtype', type(ids).__name__)}"
                            " (strings: encode them with zorro.ByteTokenizer().batch(texts))")
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError(f"text ids must have shape (batch, length) with length >= 1, got {tuple(ids.shape)}")
        mask = check_padding_mask(mask, tuple(ids.shape), "text_mask")
        if not torch.compiler.is_compiling() and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"text ids must lie in [0, {self.vocab_size}), got values in [{int(ids.min())}, {int(ids.max())}]")
        tokens = self.norm(self.embed(ids.long()))
        if self.pos_embed == "sincos":
            tokens = tokens + self.positions((ids.shape[1],), tokens.device, tokens.dtype)
        return ModalityTokens(tokens, mask, (ids.shape[1],))
