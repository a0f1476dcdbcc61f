"""The attention rule, checked against SPEC tables written out literally."""

from __future__ import annotations

import torch

from zorro.masks import POOL_RULE, SELF_ATTENTION_RULE, TokenLayout, dense_mask
from zorro.tokens import TokenTypes

A, V, F, G = TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION, TokenTypes.GLOBAL

# SPEC section 1: rows are queries, columns keys (audio, fusion, video).
SELF_TABLE = {
    (A, A): True, (A, F): False, (A, V): False,
    (F, A): True, (F, F): True, (F, V): True,
    (V, A): False, (V, F): False, (V, V): True,
}
# SPEC section 2: return-token type -> which token types it may see.
POOL_TABLE = {
    (A, A): True, (A, F): False, (A, V): False,
    (V, A): False, (V, F): False, (V, V): True,
    (F, A): False, (F, F): True, (F, V): False,
    (G, A): True, (G, F): True, (G, V): True,
}


def _one(t):
    return torch.tensor([t.value])


def test_self_attention_truth_table():
    for (q, k), expected in SELF_TABLE.items():
        assert dense_mask(_one(q), _one(k), SELF_ATTENTION_RULE).item() is expected, (q, k)


def test_pool_truth_table():
    for (q, k), expected in POOL_TABLE.items():
        assert dense_mask(_one(q), _one(k), POOL_RULE).item() is expected, (q, k)


def test_dense_mask_over_a_packed_sequence():
    layout = TokenLayout(num_audio=3, num_fusion=2, num_video=4)
    types = layout.token_types()
    assert types.tolist() == [0, 0, 0, 2, 2, 1, 1, 1, 1]
    mask = dense_mask(types, types, SELF_ATTENTION_RULE)
    assert mask.shape == (9, 9)
    assert mask[:3, :3].all() and not mask[:3, 3:].any()  # audio rows
    assert mask[3:5].all()  # fusion rows see everything
    assert mask[5:, 5:].all() and not mask[5:, :5].any()  # video rows


def test_key_spans_match_dense_mask():
    layout = TokenLayout(num_audio=5, num_fusion=3, num_video=7)
    types = layout.token_types()
    for rule, queries in ((SELF_ATTENTION_RULE, (A, F, V)), (POOL_RULE, (A, V, F, G))):
        for q in queries:
            row = dense_mask(_one(q), types, rule)[0]
            span = layout.key_span(q, rule)
            expected = torch.zeros_like(row)
            expected[span] = True
            assert torch.equal(row, expected), (q, span)


def test_spans_with_missing_modality():
    layout = TokenLayout(num_audio=0, num_fusion=2, num_video=3)
    assert layout.span(A) == slice(0, 0)
    assert layout.key_span(F, SELF_ATTENTION_RULE) == slice(0, 5)
    assert layout.key_span(G, POOL_RULE) == slice(0, 5)
