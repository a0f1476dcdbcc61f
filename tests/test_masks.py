"""The attention rules, checked against tables written out literally."""

from __future__ import annotations

import pytest
import torch

from zorro.masks import (
    MASK_RULES,
    POOL_RULE,
    SELF_ATTENTION_RULE,
    TokenLayout,
    check_mask_rule,
    dense_mask,
    self_attention_rule,
)
from zorro.tokens import TokenTypes

A, V, F, G = TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION, TokenTypes.GLOBAL

# SPEC section 1: rows are queries, columns keys (audio, fusion, video).
SELF_TABLE = {
    (A, A): True, (A, F): False, (A, V): False,
    (F, A): True, (F, F): True, (F, V): True,
    (V, A): False, (V, F): False, (V, V): True,
}
# mask_rule="full": a vanilla multimodal transformer, every pair allowed.
FULL_TABLE = {(q, k): True for q in (A, F, V) for k in (A, F, V)}
# mask_rule="bottleneck" (MBT in one stream): a modality sees itself and the fusion tokens.
BOTTLENECK_TABLE = {
    (A, A): True, (A, F): True, (A, V): False,
    (F, A): True, (F, F): True, (F, V): True,
    (V, A): False, (V, F): True, (V, V): True,
}
RULE_TABLES = {"zorro": SELF_TABLE, "full": FULL_TABLE, "bottleneck": BOTTLENECK_TABLE}
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


def test_mask_rule_names():
    assert MASK_RULES == ("zorro", "full", "bottleneck")
    assert self_attention_rule("zorro") is SELF_ATTENTION_RULE
    for bad in ("Zorro", "mbt", "", None, 0):
        with pytest.raises(ValueError, match="mask_rule must be one of"):
            check_mask_rule(bad)


@pytest.mark.parametrize("name", MASK_RULES)
def test_every_rule_truth_table(name):
    rule = self_attention_rule(name)
    for (q, k), expected in RULE_TABLES[name].items():
        assert dense_mask(_one(q), _one(k), rule).item() is expected, (name, q, k)


@pytest.mark.parametrize("name", MASK_RULES)
@pytest.mark.parametrize("counts", [(5, 3, 7), (0, 2, 4), (3, 2, 0), (4, 0, 6)])
def test_every_rule_key_spans_match_its_dense_mask(name, counts):
    rule = self_attention_rule(name)
    layout = TokenLayout(*counts)
    types = layout.token_types()
    for q in (A, F, V):
        row = dense_mask(_one(q), types, rule)[0]
        expected = torch.zeros_like(row)
        expected[layout.key_span(q, rule)] = True
        assert torch.equal(row, expected), (name, counts, q)
