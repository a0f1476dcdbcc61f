"""A byte-level text tokenizer: UTF-8 bytes plus three special ids, nothing to download.

Ids ``0``, ``1`` and ``2`` are :attr:`ByteTokenizer.pad_id`, ``bos_id`` and ``eos_id``; byte
``x`` is id ``x + 3``, so the vocabulary has 259 ids and every string of any language encodes
without an unknown token. It sits below both the data side (manifests hold strings; datasets
turn them into ids) and the model's ``text`` modality kind (whose default ``vocab_size`` is
:attr:`ByteTokenizer.vocab_size`).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["ByteTokenizer"]


class ByteTokenizer:
    """Strings <-> ``LongTensor`` ids: ``[bos] + utf8 bytes + [eos]``, padded with ``pad_id``.

    Args:
        max_length: longest id sequence :meth:`encode` returns (specials included, >= 3);
            longer texts are cut at the byte level (a cut inside a multi-byte character
            decodes with a replacement character). None: no limit.
    """

    pad_id = 0
    bos_id = 1
    eos_id = 2
    num_special = 3
    vocab_size = 256 + num_special

    def __init__(self, max_length: int | None = None) -> None:
        if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 3):
            raise ValueError(f"max_length must be None or an int >= 3 (room for bos and eos), got {max_length!r}")
        self.max_length = max_length

    def encode(self, text: str) -> torch.Tensor:
        """``text`` -> ``(L,)`` int64 ids, ``L = min(len(utf8) + 2, max_length)``."""
        if not isinstance(text, str):
            raise TypeError(f"ByteTokenizer.encode takes a str, got {type(text).__name__}")
        data = text.encode("utf-8")
        if self.max_length is not None:
            data = data[: self.max_length - 2]
        ids = torch.empty(len(data) + 2, dtype=torch.long)
        ids[0], ids[-1] = self.bos_id, self.eos_id
        if data:
            ids[1:-1] = torch.frombuffer(bytearray(data), dtype=torch.uint8).long() + self.num_special
        return ids

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Ids -> text; special ids are dropped, invalid UTF-8 becomes U+FFFD."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        data = bytes(int(i) - self.num_special for i in values if self.num_special <= int(i) < self.vocab_size)
        return data.decode("utf-8", errors="replace")

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad: ``(ids (B, L) int64, mask (B, L) bool)`` with ``L`` the
        longest encoding and ``mask`` True for real ids (what ``Zorro.encode(text=ids,
        text_mask=mask)`` takes)."""
        if isinstance(texts, str):
            raise TypeError("ByteTokenizer.batch takes a sequence of strings; for one string use [text]")
        encoded = [self.encode(t) for t in texts]
        return pad_ids(encoded, self.pad_id)


def pad_ids(sequences: Sequence[torch.Tensor], pad_value: int | float = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``(L_i, ...)`` tensors to ``(B, max L_i, ...)`` and return ``(padded, mask)``,
    ``mask (B, max L_i)`` True at real positions. ``B`` may be 0 (then ``L`` is 0)."""
    if not sequences:
        return torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.bool)
    longest = max(int(s.shape[0]) for s in sequences)
    first = sequences[0]
    out = torch.full((len(sequences), longest) + tuple(first.shape[1:]), pad_value, dtype=first.dtype)
    mask = torch.zeros(len(sequences), longest, dtype=torch.bool)
    for i, s in enumerate(sequences):
        if s.shape[1:] != first.shape[1:]:
            raise ValueError(f"sequences to pad must agree beyond their length, got {tuple(first.shape)} and {tuple(s.shape)}")
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out, mask
