"""Zorro attention: one module per use (self-attention, pooling), three interchangeable backends.

The self-attention rule (which token type may attend to which) is chosen by name, see
:data:`zorro.masks.MASK_RULES`; every backend computes every rule.

Backends (chosen by name, see :data:`BACKENDS`):

* ``"sdpa"`` (default) -- *block-sparse by construction*. The sequence is packed
  ``[audio | fusion | video]`` and every query type's allowed keys form one contiguous run
  (:meth:`zorro.masks.TokenLayout.key_span`), so attention is one
  :func:`torch.nn.functional.scaled_dot_product_attention` call per query type: audio
  queries against audio keys, video against video, fusion against all. Masked blocks are
  never computed nor stored; cost grows with ``n_a^2 + n_v^2 + n_f * n``, not ``n^2``.
  The comparison rules of :mod:`zorro.masks` run the same way: ``"bottleneck"`` as one call
  per query type over its modality and the fusion tokens, ``"full"`` as one call over the
  whole sequence.
* ``"eager"`` -- the reference: the full ``(n, n)`` score matrix, a dense boolean mask from
  :func:`zorro.masks.dense_mask`, softmax, weighted sum. Slow and memory-hungry by design;
  it is what the other backends are tested against.
* ``"flex"`` -- :func:`torch.nn.attention.flex_attention.flex_attention` with a block mask
  built from the same rule table (best under ``torch.compile`` on CUDA). Only the self-attention
  layers use it; the pooling step, a handful of queries, uses the SDPA split.

Shape letters: ``b`` batch, ``h`` heads, ``n`` tokens, ``r`` return tokens, ``d`` head width.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zorro.layers.norm import LayerNorm
from zorro.masks import POOL_RULE, SEQUENCE_ORDER, TokenLayout, check_mask_rule, dense_mask, rule_table, self_attention_rule
from zorro.tokens import TokenTypes

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
        mask: ``(n_q, n_k)`` bool, True where query ``i`` may attend to key ``j``.
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


def _sdpa_or_zeros(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA of ``q (b,h,m,d)`` over ``k, v (b,h,j,d)``; zeros when there is no key (``j == 0``)."""
    if k.shape[-2] == 0:
        return q.new_zeros(q.shape[:-1] + (v.shape[-1],))
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


class AttentionPlan:
    """What one forward pass needs to run the self-attention with a given backend and rule.

    Built once per forward (it depends only on the token layout) and shared by all layers.

    Args:
        layout: token counts of the packed sequence.
        backend: one of :data:`BACKENDS`.
        device: where the masks live.
        mask_rule: the self-attention rule by name (:data:`zorro.masks.MASK_RULES`):
            ``"zorro"`` (default), ``"full"`` or ``"bottleneck"``.

    Attributes:
        layout, backend, mask_rule: as given.
        rule: the rule table (query type -> key types).
        groups: for the ``"sdpa"`` backend, one ``(query span, key span, query types)``
            per SDPA call: the query types present, in sequence order, with neighbours that
            share a key span merged into one call (so ``"full"`` is a single call over the
            whole sequence; ``"zorro"`` never merges).
        mask: for ``"eager"``, the ``(n, n)`` bool mask; else None.
        block_mask: for ``"flex"``, a FlexAttention ``BlockMask``; else None.
    """

    def __init__(self, layout: TokenLayout, backend: str, device: torch.device | str, mask_rule: str = "zorro") -> None:
        self.layout = layout
        self.backend = check_backend(backend)
        self.mask_rule = check_mask_rule(mask_rule)
        self.rule = self_attention_rule(mask_rule)
        self.groups: list[tuple[slice, slice, tuple[TokenTypes, ...]]] = []
        for t in SEQUENCE_ORDER:
            qs, ks = layout.span(t), layout.key_span(t, self.rule)
            if qs.stop == qs.start:
                continue  # no query of this type
            if self.groups and self.groups[-1][1] == ks:
                prev_qs, _, prev_types = self.groups[-1]
                self.groups[-1] = (slice(prev_qs.start, qs.stop), ks, prev_types + (t,))
            else:
                self.groups.append((qs, ks, (t,)))
        self.mask = None
        self.block_mask = None
        if backend == "eager":
            types = layout.token_types(device)
            self.mask = dense_mask(types, types, self.rule)
        elif backend == "flex":
            from torch.nn.attention.flex_attention import create_block_mask

            types = layout.token_types(device)
            table = rule_table(self.rule).to(device)

            def mask_mod(b, h, q_idx, kv_idx):
                return table[types[q_idx], types[kv_idx]]

            n = layout.total
            self.block_mask = create_block_mask(mask_mod, None, None, n, n, device=device)

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
            from torch.nn.attention.flex_attention import flex_attention

            return flex_attention(q, k, v, block_mask=self.block_mask, scale=scale).transpose(1, 2)
        n = q.shape[-2]
        if len(self.groups) == 1 and (self.groups[0][0].start, self.groups[0][0].stop) == (0, n):
            qs, ks, _ = self.groups[0]  # one call: every query against one key run ("full")
            kg, vg = (k, v) if (ks.start, ks.stop) == (0, n) else (k[:, :, ks], v[:, :, ks])
            return _sdpa_or_zeros(q, kg, vg, scale).transpose(1, 2).contiguous()  # a no-op for the model's q (a view of (b, n, 3, h, d))
        # Cut q, k, v once into the per-type spans with ``split``: its backward is one
        # concatenation, where a slice per use costs a full-size zero-fill + copy + add each.
        sizes = [self.layout.count(t) for t in SEQUENCE_ORDER]
        pieces = {name: dict(zip(SEQUENCE_ORDER, t.split(sizes, dim=2))) for name, t in (("q", q), ("k", k), ("v", v))}
        outs = []
        for qs, ks, types in self.groups:
            qg = pieces["q"][types[0]] if len(types) == 1 else q[:, :, qs]
            if (ks.start, ks.stop) == (0, n):  # every key (fusion queries; any query under "full")
                kg, vg = k, v
            elif len(types) == 1 and (ks.start, ks.stop) == (qs.start, qs.stop):  # the query's own span
                kg, vg = pieces["k"][types[0]], pieces["v"][types[0]]
            else:  # another contiguous run ("bottleneck": a modality and the fusion tokens)
                kg, vg = k[:, :, ks], v[:, :, ks]
            outs.append(_sdpa_or_zeros(qg, kg, vg, scale).transpose(1, 2))  # (b, m, h, d)
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
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (b, h, n, d) each
        out = plan.attend_tokens_first(q, k, v, self.scale)  # (b, n, h, d)
        return self.to_out(out.reshape(b, n, self.heads * self.dim_head))


class AttentionPool(nn.Module):
    """Typed return tokens cross-attend to the final token sequence (Zorro's output head).

    A return token of type AUDIO sees audio tokens only, VIDEO video only, FUSION fusion
    only, GLOBAL every token (:data:`zorro.masks.POOL_RULE`). Queries are normed here; the
    context is expected to be normed already (the model's final LayerNorm).
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
        query_types: Sequence[TokenTypes],
        layout: TokenLayout,
        backend: str = "sdpa",
    ) -> torch.Tensor:
        """Pool ``context (b, n, dim)`` into ``queries (b, r, dim)`` -> ``(b, r, dim)``.

        ``query_types`` gives the type of each of the ``r`` queries; ``layout`` the token
        counts of ``context``. The residual is added by the caller.
        """
        b, r, _ = queries.shape
        n = context.shape[1]
        q = self.to_q(self.norm(queries)).view(b, r, self.heads, self.dim_head).transpose(1, 2)  # (b, h, r, d)
        k, v = self.to_kv(context).view(b, n, 2, self.heads, self.dim_head).permute(2, 0, 3, 1, 4).unbind(0)
        if backend == "eager":
            qt = torch.tensor([t.value for t in query_types], dtype=torch.long, device=context.device)
            mask = dense_mask(qt, layout.token_types(context.device), POOL_RULE)  # (r, n)
            out = eager_attention(q, k, v, mask, self.scale)
        else:
            out = self._split(q, k, v, query_types, layout)
        return self.to_out(out.transpose(1, 2).reshape(b, r, self.heads * self.dim_head))

    def _split(self, q, k, v, query_types, layout) -> torch.Tensor:
        # One SDPA call per distinct return-token type, over that type's key span only.
        order = sorted(range(len(query_types)), key=lambda i: query_types[i].value)
        outs, start = [], 0
        while start < len(order):
            t = query_types[order[start]]
            stop = start
            while stop < len(order) and query_types[order[stop]] is t:
                stop += 1
            idx = order[start:stop]
            ks = layout.key_span(t, POOL_RULE)
            qg = q[:, :, idx[0] : idx[-1] + 1] if idx == list(range(idx[0], idx[-1] + 1)) else q[:, :, idx]
            outs.append(_sdpa_or_zeros(qg, k[:, :, ks], v[:, :, ks], self.scale))
            start = stop
        out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # (b, h, r, d), sorted by type
        if order != list(range(len(order))):
            inverse = sorted(range(len(order)), key=lambda i: order[i])
            out = out[:, :, inverse]
        return out
