"""The ``"flex"`` attention backend: FlexAttention block masks built from the mask rules.

The rule of a :class:`~zorro.masks.TokenLayout` is written as a union of rectangles over
(query, key) positions -- ``q in [a, b) and k in [c, d)`` -- with plain Python ints taken from
the layout, so the ``mask_mod`` that :func:`torch.nn.attention.flex_attention.create_block_mask`
and the compiled kernels evaluate captures no tensor when no block is padded. Padded blocks
(``text``, ``sequence`` modalities given with ``<name>_mask``) add one per-sample condition,
which reads two ``(b, n)`` bool tensors.

Where it runs (PyTorch 2.13):

* CUDA: forward and backward, eager and under ``torch.compile`` (the fast path).
* CPU: forward only (``torch.no_grad`` / inference), eager and under ``torch.compile``.
  PyTorch has no CPU backward for FlexAttention, eager or compiled, so a training step with
  ``attn_backend="flex"`` on CPU raises :class:`ValueError` at its first call, naming
  ``attn_backend="sdpa"`` (the same function, block-sparse, with a backward) instead.

Shape letters: ``b`` batch, ``h`` heads, ``n`` tokens, ``d`` head width.
"""

from __future__ import annotations

from typing import Sequence

import torch

from zorro.masks import TokenLayout

#: What a user sees when a FlexAttention backward is asked for on CPU.
CPU_BACKWARD_MESSAGE = (
    "attn_backend='flex' cannot train on CPU: PyTorch's FlexAttention has no CPU backward (eager or under "
    "torch.compile). Use attn_backend='sdpa' to train on CPU (the same attention, block-sparse, compiled or not); "
    "'flex' on CPU serves inference under torch.no_grad(), and trains on CUDA."
)

Rect = tuple[int, int, int, int]


def rule_rectangles(layout: TokenLayout, rule: str) -> list[Rect]:
    """The allowed (query, key) pairs of ``rule`` over ``layout`` as rectangles
    ``(q_start, q_stop, k_start, k_stop)`` of positions (Python ints; stops exclusive).

    Key blocks that are neighbours in the sequence are merged into one range, and
    neighbouring query blocks that see the same key ranges share a rectangle, so ``"full"``
    is one rectangle and ``"zorro"`` over ``[audio | fusion | video]`` is three.
    """
    rows: list[tuple[int, int, tuple[tuple[int, int], ...]]] = []
    for name, count in layout.blocks:
        if count == 0:
            continue
        span = layout.span(name)
        ranges: list[list[int]] = []
        for j in layout.key_blocks(name, rule):
            s = layout.span(layout.names[j])
            if ranges and ranges[-1][1] == s.start:
                ranges[-1][1] = s.stop
            else:
                ranges.append([s.start, s.stop])
        keys = tuple((a, b) for a, b in ranges)
        if rows and rows[-1][1] == span.start and rows[-1][2] == keys:
            rows[-1] = (rows[-1][0], span.stop, keys)
        else:
            rows.append((span.start, span.stop, keys))
    return [(q0, q1, k0, k1) for q0, q1, keys in rows for k0, k1 in keys]


def rectangles_mask_mod(rects: Sequence[Rect]):
    """A FlexAttention ``mask_mod(b, h, q_idx, kv_idx) -> bool`` that is True inside any of ``rects``."""
    rects = tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in rects)

    def mask_mod(b, h, q_idx, kv_idx):
        out = None
        for q0, q1, k0, k1 in rects:
            inside = (q_idx >= q0) & (q_idx < q1) & (kv_idx >= k0) & (kv_idx < k1)
            out = inside if out is None else out | inside
        if out is None:  # an empty sequence: nothing is allowed
            out = q_idx < 0
        return out

    return mask_mod


def flex_block_mask(layout: TokenLayout, rule: str, device: torch.device | str,
                    valid: torch.Tensor | None = None, fallback: torch.Tensor | None = None):
    """The FlexAttention ``BlockMask`` of ``rule`` over ``layout``.

    Args:
        layout: the blocks of the packed sequence (``n = layout.total`` tokens).
        rule: a ``mask_rule`` name.
        device: where the mask lives.
        valid: optional ``(b, n)`` bool, True for real keys (padded blocks).
        fallback: with ``valid``, ``(b, n)`` bool, True for the queries whose allowed keys
            are all padding: they attend to those padded keys instead (rows stay finite).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    n = layout.total
    rect_mod = rectangles_mask_mod(rule_rectangles(layout, rule))
    if valid is None:
        return create_block_mask(rect_mod, None, None, n, n, device=device)
    if fallback is None or valid.shape != fallback.shape or valid.dim() != 2 or valid.shape[1] != n:
        raise ValueError(f"valid and fallback must both be (batch, {n}) bool tensors, got "
                         f"{tuple(valid.shape)} and {None if fallback is None else tuple(fallback.shape)}")

    def mask_mod(b, h, q_idx, kv_idx):
        return rect_mod(b, h, q_idx, kv_idx) & (valid[b, kv_idx] | fallback[b, q_idx])

    return create_block_mask(mask_mod, valid.shape[0], None, n, n, device=device)


def check_flex_trainable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise :class:`ValueError` (:data:`CPU_BACKWARD_MESSAGE`) when ``q, k, v`` are on the CPU
    and a gradient through them is wanted: FlexAttention has no CPU backward."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise ValueError(CPU_BACKWARD_MESSAGE)


def flex_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask, scale: float) -> torch.Tensor:
    """FlexAttention of ``q, k, v (b, h, n, d)`` under ``block_mask`` -> ``(b, h, n, d)``.

    Raises:
        ValueError: a gradient is wanted on CPU (see :func:`check_flex_trainable`).
    """
    from torch.nn.attention.flex_attention import flex_attention

    check_flex_trainable(q, k, v)
    return flex_attention(q, k, v, block_mask=block_mask, scale=scale)
