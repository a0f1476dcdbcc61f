"""Zorro attention: one module per use (self-attention, pooling), three interchangeable backends.

Which token may attend to which is decided by :mod:`zorro.masks` alone (a ``mask_rule`` over
the blocks of a :class:`~zorro.masks.TokenLayout`); every backend computes every rule for any
number of modality blocks.

Backends (chosen by name, see :data:`BACKENDS`):

* ``"sdpa"`` (default) -- *block-sparse by construction*: one
  :func:`torch.nn.functional.scaled_dot_product_attention` call per query block, over the key
  blocks the rule allows it (neighbouring query blocks that see the same keys share a call, so
  ``"full"`` is one call). Under ``"zorro"`` a modality's queries meet only its own keys and
  the fusion queries meet every key: masked blocks are never computed nor stored, and cost
  grows with ``sum(n_m^2) + n_f * n``, not ``n^2``. Keys allowed to a block that are not
  neighbours in the sequence are gathered into one tensor for that call.
* ``"eager"`` -- the reference: the full ``(n, n)`` score matrix, a dense boolean mask,
  softmax, weighted sum. Slow and memory-hungry by design; it is what the other backends
  are tested against.
* ``"flex"`` -- :func:`torch.nn.attention.flex_attention.flex_attention` with a block mask
  built from the same rule (best under ``torch.compile`` on CUDA; on CPU inference only, see
  :mod:`zorro.layers.flex`). Only the self-attention layers use it; the pooling step, a
  handful of queries, uses the SDPA split.

Padding: modalities of variable length (``text``, ``sequence``) come with a boolean mask,
True for real tokens. Padded keys are never attended to. A query whose allowed keys are all
padding (a block of a sample that has no real token of that modality) attends to its block's
padding instead, so every row stays finite; those positions are never attended to nor pooled,
and a return token with no real key to pool gives zeros (its embedding is then just the
return token itself).

Shape letters: ``b`` batch, ``h`` heads, ``n`` tokens, ``r`` return tokens, ``d`` head width.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zorro.layers.norm import LayerNorm
from zorro.layers.flex import flex_attend, flex_block_mask
from zorro.masks import POOL_RULE, TokenLayout, check_mask_rule

BACKENDS = ("sdpa", "eager", "flex")


def check_backend(name: str) -> str:
    """Validate an attention backend name; returns it unchanged."""
    if name not in BACKENDS:
        raise ValueError(f"attn_backend must be one of {BACKENDS}, got {name!r}")
    return name


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Dense masked attention (the reference arithmetic).

    Args:
        q: ``(b, h, n_q, d)``; k, v: ``(b, h, n_k, d)``.
        mask: bool, True where query ``i`` may attend to key ``j``: ``(n_q, n_k)``, or
            ``(b, 1, n_q, n_k)`` when it differs between samples.
        scale: multiplier of the dot products (``d ** -0.5``).

    Returns:
        ``(b, h, n_q, d)``. A query row with no allowed key yields zeros (not NaN, and not a
        silent average over every key).
    """
    sim = (q * scale) @ k.transpose(-2, -1)  # (b, h, n_q, n_k)
    sim = sim.masked_fill(~mask, -torch.finfo(sim.dtype).max)
    attn = sim.softmax(dim=-1)
    attn = attn * mask.any(dim=-1, keepdim=True).to(attn.dtype)  # zero rows that may see nothing
    return attn.to(v.dtype) @ v


def _sdpa_or_zeros(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA of ``q (b,h,m,d)`` over ``k, v (b,h,j,d)`` with an optional bool ``mask``
    broadcastable to ``(b, h, m, j)``; zeros when there is no key (``j == 0``)."""
    if k.shape[-2] == 0:
        return q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _check_padding(layout: TokenLayout, padding: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """The padding masks of the layout's blocks that have one, checked: name -> ``(b, n_m)`` bool."""
    if not padding:
        return {}
    out = {}
    for name, mask in padding.items():
        if mask is None:
            continue
        if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != layout.count(name):
            raise ValueError(f"the padding mask of block {name!r} must be a (batch, {layout.count(name)}) bool tensor, "
                             f"got {tuple(mask.shape)} {mask.dtype}")
        out[name] = mask
    return out


class _KeyValidity:
    """Per-sample key validity over a layout: which keys are real, and which query blocks
    have no real key to attend to (their rows fall back to their own padding)."""

    def __init__(self, layout: TokenLayout, padding: dict[str, torch.Tensor], rule, batch: int, device) -> None:
        self.layout, self.padding = layout, padding
        ones = {}
        parts = []
        for name, count in layout.blocks:
            if name in padding:
                parts.append(padding[name])
            else:
                ones.setdefault(count, torch.ones(batch, count, dtype=torch.bool, device=device))
                parts.append(ones[count])
        self.valid = torch.cat(parts, dim=1)  # (b, n)
        # (b, blocks): True where no key a query of the block may see is real
        self.empty = torch.stack([self.keys(layout.key_blocks(name, rule), fallback=False).any(-1).logical_not()
                                  for name in layout.names], dim=1)

    def keys(self, blocks: Sequence[int], *, fallback: bool = True) -> torch.Tensor:
        """``(b, n_k)`` bool over the keys of ``blocks`` (in order); with ``fallback``, a
        sample with no real key among them gets every key (its rows are padding)."""
        spans = [self.layout.span(self.layout.names[j]) for j in blocks]
        if not spans:
            return self.valid[:, :0]
        mask = torch.cat([self.valid[:, s] for s in spans], dim=1) if len(spans) > 1 else self.valid[:, spans[0]]
        return mask | mask.any(-1, keepdim=True).logical_not() if fallback else mask


class _BlockViews(torch.autograd.Function):
    """``x (b, n, s, h, d)`` (the fused q/k/v or k/v projection) -> its ``s`` slots as
    ``(b, h, n, d)`` views, then every block's ``(b, h, n_m, d)`` view of every slot.

    What autograd would do with ``permute(...).unbind(0)`` followed by ``split`` per slot is a
    concatenation per slot, a stack of the slots and a copy back to ``(b, n, s, h, d)``: three
    passes over the gradient. This backward writes each gradient once, straight into the
    ``(b, n, s, h, d)`` layout the projection's backward reads (a slot used whole and in
    blocks -- the keys of the fusion queries and of a modality's own queries -- is summed in
    place), and zero-fills only the parts no output used.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, counts: tuple[int, ...]):  # noqa: D102
        ctx.counts, ctx.shape = counts, x.shape
        slots = x.permute(2, 0, 3, 1, 4).unbind(0)  # s x (b, h, n, d)
        out = list(slots)
        for t in slots:
            out.extend(t.split(counts, dim=2))
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):  # noqa: D102
        counts, (b, n, s, h, d) = ctx.counts, ctx.shape
        ref = next(g for g in grads if g is not None)
        out = torch.empty(ctx.shape, dtype=ref.dtype, device=ref.device)
        view = out.permute(2, 0, 3, 1, 4)  # (s, b, h, n, d) view of out
        blocks = len(counts)
        for slot in range(s):
            whole = grads[slot]
            if whole is not None:
                view[slot].copy_(whole)
            start = 0
            for i, count in enumerate(counts):
                part = grads[s + slot * blocks + i]
                region = view[slot][:, :, start : start + count]
                if part is not None:
                    region.add_(part) if whole is not None else region.copy_(part)
                elif whole is None:
                    region.zero_()
                start += count
        return out, None


def block_views(x: torch.Tensor, counts: Sequence[int]) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """The slots of a fused projection ``x (b, n, s, h, d)`` as ``(b, h, n, d)`` views, and each
    slot cut into blocks of ``counts`` tokens: ``(slots, pieces)`` with ``pieces[slot][block]``
    a ``(b, h, n_block, d)`` view. With gradients, :class:`_BlockViews` routes them back in one
    pass; without, plain views."""
    counts = tuple(int(c) for c in counts)
    s = x.shape[2]
    if torch.is_grad_enabled() and x.requires_grad:
        out = _BlockViews.apply(x, counts)
    else:
        slots = x.permute(2, 0, 3, 1, 4).unbind(0)
        out = (*slots, *(p for t in slots for p in t.split(counts, dim=2)))
    slots = list(out[:s])
    pieces = [list(out[s + i * len(counts) : s + (i + 1) * len(counts)]) for i in range(s)]
    return slots, pieces


def _gather_keys(layout: TokenLayout, keys: tuple[int, ...], k: torch.Tensor, v: torch.Tensor,
                 pieces: Sequence[Sequence[torch.Tensor]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values ``(b, h, n_k, d)`` of the blocks ``keys`` (indices into
    ``layout.blocks``, in sequence order) from ``k, v (b, h, n, d)``: the tensors themselves
    when every block is meant, a view when the blocks are neighbours, else one concatenation.
    ``pieces`` (``q, k, v`` already split into the blocks) lets one block be taken as its piece."""
    nonempty = tuple(j for j, c in enumerate(layout.counts) if c)
    if keys == nonempty:  # every key (fusion queries; any query under "full"; the global return token)
        return k, v
    if len(keys) == 1 and pieces is not None:  # one block (a modality's own, under "zorro")
        return pieces[1][keys[0]], pieces[2][keys[0]]
    spans = [layout.span(layout.names[j]) for j in keys]
    if spans and all(a.stop == b.start for a, b in zip(spans, spans[1:])):  # neighbours: one view
        run = slice(spans[0].start, spans[-1].stop)
        return k[:, :, run], v[:, :, run]
    if pieces is not None:
        return torch.cat([pieces[1][j] for j in keys], dim=2), torch.cat([pieces[2][j] for j in keys], dim=2)
    return torch.cat([k[:, :, s] for s in spans], dim=2), torch.cat([v[:, :, s] for s in spans], dim=2)


class AttentionPlan:
    """What one forward pass needs to run the self-attention with a given backend and rule.

    Built once per forward (it depends only on the token layout and the padding masks) and
    shared by all layers.

    Args:
        layout: the blocks of the packed sequence.
        backend: one of :data:`BACKENDS`.
        device: where the masks live.
        mask_rule: the self-attention rule by name (:data:`zorro.masks.MASK_RULES`).
        padding: optional ``block name -> (b, n_m)`` bool masks, True for real tokens.

    Attributes:
        layout, backend, mask_rule: as given.
        groups: for ``"sdpa"``, one ``(query span, key block indices, (b, 1, 1, n_k) bool
            mask or None)`` per SDPA call, in sequence order; query blocks that are
            neighbours and see the same keys share one call.
        mask: for ``"eager"``, the ``(n, n)`` bool mask, or ``(b, 1, n, n)`` with padding.
        block_mask: for ``"flex"``, a FlexAttention ``BlockMask``; else None.
    """

    def __init__(self, layout: TokenLayout, backend: str, device: torch.device | str, mask_rule: str = "zorro",
                 padding: Mapping[str, torch.Tensor] | None = None) -> None:
        self.layout = layout
        self.backend = check_backend(backend)
        self.mask_rule = check_mask_rule(mask_rule)
        padding = _check_padding(layout, padding)
        batch = next(iter(padding.values())).shape[0] if padding else None
        validity = _KeyValidity(layout, padding, mask_rule, batch, device) if padding else None
        self.groups: list[tuple[slice, tuple[int, ...], torch.Tensor | None]] = []
        for name, count in layout.blocks:
            if count == 0:
                continue
            span = layout.span(name)
            keys = layout.key_blocks(name, mask_rule)
            if self.groups and self.groups[-1][1] == keys and self.groups[-1][0].stop == span.start:
                self.groups[-1] = (slice(self.groups[-1][0].start, span.stop), keys, self.groups[-1][2])
            else:
                padded = validity is not None and any(layout.names[j] in padding for j in keys)
                mask = validity.keys(keys)[:, None, None, :] if padded else None
                self.groups.append((span, keys, mask))
        self.mask = None
        self.block_mask = None
        if backend == "eager":
            self.mask = layout.dense_mask(mask_rule, device=device)  # (n, n)
            if validity is not None:
                ids = layout.block_ids(device)
                self.mask = self.mask & (validity.valid[:, None, :] | validity.empty[:, ids][:, :, None])
                self.mask = self.mask[:, None]  # (b, 1, n, n)
        elif backend == "flex":
            if validity is None:
                self.block_mask = flex_block_mask(layout, mask_rule, device)
            else:
                # (b, n): the queries with no real key. Built by concatenation, not by indexing with
                # block ids: Inductor's CPU FlexAttention kernel rejects (NoValidChoicesError) a mask
                # buffer that is a fused gather.
                empty = validity.empty
                fallback = torch.cat([empty[:, i : i + 1].expand(-1, c) for i, c in enumerate(layout.counts)], dim=1)
                self.block_mask = flex_block_mask(layout, mask_rule, device, validity.valid, fallback)

    def attend_qkv(self, qkv: torch.Tensor, scale: float) -> torch.Tensor:
        """Masked self-attention of the fused projection ``qkv (b, n, 3, h, d)`` -> ``(b, n, h, d)``.

        The same as :meth:`attend_tokens_first` on its three slots; with the ``"sdpa"``
        backend the blocks are cut by :func:`block_views`, whose backward writes the
        gradient of ``qkv`` in one pass.
        """
        if self.backend != "sdpa":
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (b, h, n, d) each
            return self.attend_tokens_first(q, k, v, scale)
        (q, k, v), pieces = block_views(qkv, self.layout.counts)
        return self._sdpa(q, k, v, scale, pieces)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Masked self-attention of ``q, k, v (b, h, n, d)`` -> ``(b, h, n, d)``."""
        return self.attend_tokens_first(q, k, v, scale).transpose(1, 2)

    def attend_tokens_first(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Like :meth:`attend` but returns ``(b, n, h, d)``, the layout the output projection reads.

        With the ``"sdpa"`` backend the result is contiguous: the CPU and CUDA SDPA kernels
        write their output in ``(b, m, h, d)`` memory order, so the per-group results are
        concatenated along the token axis in that order -- one copy, and the following
        ``reshape(b, n, h * d)`` is a free view (concatenating heads-first and transposing
        afterwards costs a second full copy, and under autograd keeps both alive).
        """
        if self.backend == "eager":
            return eager_attention(q, k, v, self.mask, scale).transpose(1, 2)
        if self.backend == "flex":
            return flex_attend(q, k, v, self.block_mask, scale).transpose(1, 2)
        return self._sdpa(q, k, v, scale)

    def _sdpa(self, q, k, v, scale: float, pieces=None) -> torch.Tensor:
        """The ``"sdpa"`` backend: one call per group; ``pieces[slot][block]`` are the blocks of
        ``q, k, v`` when the caller has cut them (else they are cut here with ``split``, whose
        backward is one concatenation, where a slice per use costs a full-size zero-fill +
        copy + add each)."""
        layout, n = self.layout, q.shape[-2]
        if len(self.groups) == 1 and self.groups[0][0] == slice(0, n):
            _, keys, mask = self.groups[0]  # one call: every query against the same keys ("full")
            kg, vg = _gather_keys(layout, keys, k, v)
            return _sdpa_or_zeros(q, kg, vg, scale, mask).transpose(1, 2).contiguous()  # a no-op for the model's q (a view of (b, n, 3, h, d))
        if pieces is None:
            pieces = [t.split(layout.counts, dim=2) for t in (q, k, v)]
        outs = []
        for span, keys, mask in self.groups:
            own = [j for j, (name, c) in enumerate(layout.blocks) if c and layout.span(name) == span]
            qg = pieces[0][own[0]] if own else q[:, :, span]  # one block: its piece; merged blocks: a slice
            kg, vg = _gather_keys(layout, keys, k, v, pieces)
            outs.append(_sdpa_or_zeros(qg, kg, vg, scale, mask).transpose(1, 2))  # (b, m, h, d)
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention under the plan's mask (Zorro's by default), no biases.

    ``x (b, n, dim) -> (b, n, dim)``; the residual is added by the caller. Queries, keys and
    values come from one fused projection (``to_qkv``), scale ``dim_head ** -0.5``.
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        inner = dim_head * heads
        self.norm = LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, plan: AttentionPlan) -> torch.Tensor:
        """``(b, n, dim) -> (b, n, dim)`` with the attention pattern of ``plan``."""
        b, n, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).view(b, n, 3, self.heads, self.dim_head)
        out = plan.attend_qkv(qkv, self.scale)  # (b, n, h, d)
        return self.to_out(out.reshape(b, n, self.heads * self.dim_head))


class AttentionPool(nn.Module):
    """Return tokens cross-attend to the final token sequence (Zorro's output head).

    A return token named after a modality sees that modality's tokens only, ``"fusion"`` the
    fusion tokens only, ``"global"`` every token (:data:`zorro.masks.POOL_RULE`). Queries are
    normed here; the context is expected to be normed already (the model's final LayerNorm).
    """

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.scale = dim_head**-0.5
        inner = dim_head * heads
        self.norm = LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self,
        queries: torch.Tensor,
        context: torch.Tensor,
        query_names: Sequence[str],
        layout: TokenLayout,
        backend: str = "sdpa",
        padding: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Pool ``context (b, n, dim)`` into ``queries (b, r, dim)`` -> ``(b, r, dim)``.

        ``query_names`` names each of the ``r`` queries (a modality, ``"fusion"`` or
        ``"global"``); ``layout`` gives the blocks of ``context``; ``padding`` the optional
        ``(b, n_m)`` masks of padded blocks (True for real tokens). A query with no real key
        gives zeros. The residual is added by the caller.
        """
        b, r, _ = queries.shape
        n = context.shape[1]
        q = self.to_q(self.norm(queries)).view(b, r, self.heads, self.dim_head).transpose(1, 2)  # (b, h, r, d)
        kv = self.to_kv(context).view(b, n, 2, self.heads, self.dim_head)
        (k, v), pieces = block_views(kv, layout.counts)  # (b, h, n, d) each, and per block
        padding = _check_padding(layout, padding)
        validity = _KeyValidity(layout, padding, POOL_RULE, b, context.device) if padding else None
        if backend == "eager":
            mask = layout.dense_mask(POOL_RULE, list(query_names), device=context.device)  # (r, n)
            if validity is not None:
                mask = (mask & validity.valid[:, None, :])[:, None]  # (b, 1, r, n)
            out = eager_attention(q, k, v, mask, self.scale)
        else:
            out = self._split(q, k, v, list(query_names), layout, padding, validity, [None, *pieces])
        return self.to_out(out.transpose(1, 2).reshape(b, r, self.heads * self.dim_head))

    def _split(self, q, k, v, names, layout, padding, validity, pieces) -> torch.Tensor:
        # One SDPA call per distinct return-token name, over the keys that name may see.
        order = sorted(range(len(names)), key=lambda i: names.index(names[i]))  # stable: grouped by first appearance
        outs, start = [], 0
        while start < len(order):
            name = names[order[start]]
            stop = start
            while stop < len(order) and names[order[stop]] == name:
                stop += 1
            idx = order[start:stop]
            keys = layout.key_blocks(name, POOL_RULE)
            qg = q[:, :, idx[0] : idx[-1] + 1] if idx == list(range(idx[0], idx[-1] + 1)) else q[:, :, idx]
            kg, vg = _gather_keys(layout, keys, k, v, pieces)
            mask = None
            if validity is not None and any(layout.names[j] in padding for j in keys):
                real = validity.keys(keys, fallback=False)  # (b, n_k)
                mask = (real | real.any(-1, keepdim=True).logical_not())[:, None, None, :]
                res = _sdpa_or_zeros(qg, kg, vg, self.scale, mask)
                res = res * real.any(-1).to(res.dtype)[:, None, None, None]  # no real key: zeros
            else:
                res = _sdpa_or_zeros(qg, kg, vg, self.scale)
            outs.append(res)
            start = stop
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # (b, h, r, d), grouped by name
        if order != list(range(len(order))):
            inverse = sorted(range(len(order)), key=lambda i: order[i])
            out = out[:, :, inverse]
        return out
