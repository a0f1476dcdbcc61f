"""The attention rules, checked against tables written out literally, for 2, 3 and 4 modalities."""

from __future__ import annotations

import itertools

import pytest
import torch

from zorro.masks import (
    FUSION,
    GLOBAL,
    MASK_RULES,
    POOL_RULE,
    TokenLayout,
    allowed,
    block_table,
    check_mask_rule,
    check_modality_name,
)

A, V, F = "audio", "video", FUSION

# Rows are queries, columns keys: the audio-video tables of the paper and the two baselines.
SELF_TABLE = {
    (A, A): True, (A, F): False, (A, V): False,
    (F, A): True, (F, F): True, (F, V): True,
    (V, A): False, (V, F): False, (V, V): True,
}
FULL_TABLE = {(q, k): True for q in (A, F, V) for k in (A, F, V)}  # a vanilla multimodal transformer
BOTTLENECK_TABLE = {  # MBT in one stream: a modality sees itself and the fusion tokens
    (A, A): True, (A, F): True, (A, V): False,
    (F, A): True, (F, F): True, (F, V): True,
    (V, A): False, (V, F): True, (V, V): True,
}
RULE_TABLES = {"zorro": SELF_TABLE, "full": FULL_TABLE, "bottleneck": BOTTLENECK_TABLE}
# Return token -> which blocks it may pool.
POOL_TABLE = {
    (A, A): True, (A, F): False, (A, V): False,
    (V, A): False, (V, F): False, (V, V): True,
    (F, A): False, (F, F): True, (F, V): False,
    (GLOBAL, A): True, (GLOBAL, F): True, (GLOBAL, V): True,
}

# Four modalities, written out: under "zorro" each modality row has one True (its own
# block), the fusion row is all True.
FOUR = ("audio", "video", "text", "imu")
ZORRO_FOUR = {(q, k): (q == k or q == F) for q in FOUR + (F,) for k in FOUR + (F,)}
BOTTLENECK_FOUR = {(q, k): (q == k or q == F or k == F) for q in FOUR + (F,) for k in FOUR + (F,)}


@pytest.mark.parametrize("rule", MASK_RULES)
def test_audio_video_truth_tables(rule):
    for (q, k), expected in RULE_TABLES[rule].items():
        assert allowed(q, k, rule) is expected, (rule, q, k)


def test_pool_truth_table():
    for (q, k), expected in POOL_TABLE.items():
        assert allowed(q, k, POOL_RULE) is expected, (q, k)


def test_four_modality_tables():
    for (q, k), expected in ZORRO_FOUR.items():
        assert allowed(q, k, "zorro") is expected, (q, k)
    for (q, k), expected in BOTTLENECK_FOUR.items():
        assert allowed(q, k, "bottleneck") is expected, (q, k)
    assert all(allowed(q, k, "full") for q in FOUR + (F,) for k in FOUR + (F,))
    table = block_table(FOUR + (F,), FOUR + (F,), "zorro")
    assert table.tolist() == [[ZORRO_FOUR[(q, k)] for k in FOUR + (F,)] for q in FOUR + (F,)]


def test_dense_mask_over_a_packed_sequence():
    layout = TokenLayout.audio_video(3, 2, 4)
    assert layout.block_ids().tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    mask = layout.dense_mask("zorro")
    assert mask.shape == (9, 9)
    assert mask[:3, :3].all() and not mask[:3, 3:].any()  # audio rows
    assert mask[3:5].all()  # fusion rows see everything
    assert mask[5:, 5:].all() and not mask[5:, :5].any()  # video rows
    pool = layout.dense_mask(POOL_RULE, [A, V, F, GLOBAL])
    assert pool.tolist() == [[True] * 3 + [False] * 6, [False] * 5 + [True] * 4,
                             [False] * 3 + [True] * 2 + [False] * 4, [True] * 9]


@pytest.mark.parametrize("rule", MASK_RULES)
@pytest.mark.parametrize("counts", [(5, 3, 7, 2, 4), (0, 2, 4, 3, 0), (3, 0, 2, 2, 5)])
def test_key_blocks_match_the_dense_mask(rule, counts):
    layout = TokenLayout.packed(zip(("audio", "video", "text", "imu"), (counts[0],) + counts[2:]), counts[1], first="audio")
    dense = layout.dense_mask(rule)
    for name in layout.names:
        span = layout.span(name)
        for row in dense[span]:
            expected = torch.zeros_like(row)
            for j in layout.key_blocks(name, rule):
                expected[layout.span(layout.names[j])] = True
            assert torch.equal(row, expected), (rule, counts, name)


def test_packed_order_puts_fusion_after_the_tables_first_modality():
    assert TokenLayout.packed([("audio", 2), ("video", 3)], 4, first="audio").names == ("audio", FUSION, "video")
    assert TokenLayout.packed([("video", 3)], 4, first="audio").names == (FUSION, "video")
    assert TokenLayout.packed([("audio", 2), ("video", 3), ("text", 1)], 4, first="audio").names == ("audio", FUSION, "video", "text")
    layout = TokenLayout.packed([("video", 3), ("text", 2)], 1, first="audio")
    assert layout.span("text") == slice(4, 6) and layout.total == 6 and layout.count(GLOBAL) == 6
    with pytest.raises(ValueError, match="no block 'audio'"):
        layout.span("audio")


def test_key_blocks_need_not_be_neighbours():
    # bottleneck with three modalities: text sees text and fusion, which are not neighbours
    layout = TokenLayout.packed([("audio", 2), ("video", 3), ("text", 4)], 2, first="audio")
    assert layout.names == ("audio", FUSION, "video", "text")
    assert layout.key_blocks("text", "bottleneck") == (1, 3)
    assert layout.key_blocks("text", "zorro") == (3,)
    assert layout.key_blocks(FUSION, "zorro") == (0, 1, 2, 3)


def test_mask_rule_names():
    assert MASK_RULES == ("zorro", "full", "bottleneck")
    for bad in ("Zorro", "mbt", "", None, 0):
        with pytest.raises(ValueError, match="mask_rule must be one of"):
            check_mask_rule(bad)


@pytest.mark.parametrize("bad", ["fusion", "global", "Audio", "text_mask", "audio_features", "2d", "", None, "_x"])
def test_modality_names_are_checked(bad):
    with pytest.raises(ValueError, match="modality name|cannot name a modality|may not end"):
        check_modality_name(bad)


def test_every_pair_of_rules_differs_only_where_the_table_says():
    names = ("audio", "video", "text", FUSION)
    for q, k in itertools.product(names, names):
        assert allowed(q, k, "zorro") <= allowed(q, k, "bottleneck") <= allowed(q, k, "full"), (q, k)
