"""The attention rules, stated once, for any number of modalities.

A Zorro sequence is a row of *blocks*: one block of tokens per modality given (``audio``,
``video``, ``text``, ...) and one block of learned ``fusion`` tokens. Which block may attend
to which is decided by the rule tables below and nowhere else: the dense boolean masks of the
eager reference path, the per-block calls of the fused path and the FlexAttention block masks
are all derived from :func:`allowed` (see :mod:`zorro.layers.attention`).

A rule says, for a query of each *role* (a ``modality`` token or a ``fusion`` token), which
kinds of key it may see: ``"own"`` (its own block), ``"modality"`` (every other modality
block) and ``"fusion"`` (the fusion block, when it is not its own). The rules, chosen by name
with ``ZorroConfig.mask_rule`` (:data:`MASK_RULES`):

==============  ====================  =============================
``mask_rule``   a modality's tokens   the fusion tokens
==============  ====================  =============================
``"zorro"``     own block only        everything
``"full"``      everything            everything
``"bottleneck"`` own block + fusion    everything
==============  ====================  =============================

Under ``"zorro"`` no modality ever depends on another: each modality's tokens, and the
output pooled from them, are the same whatever the other inputs are and whether they are
given at all. ``"full"`` is a vanilla multimodal transformer; ``"bottleneck"`` is MBT's
attention bottlenecks written as one mask over one stream (information crosses between
modalities through the fusion tokens, so after two layers every modality has seen the others).

Pooling (:data:`POOL_RULE`, the same under every rule): a return token named after a modality
sees that modality's tokens only, ``"fusion"`` the fusion tokens only, ``"global"`` every token.

Sequence order: the modalities in the order of the model's modality table, with the fusion
block after the table's first modality (or first, when that modality is not given) --
``[audio | fusion | video]`` for the default model, the order of the ``zorro-pytorch`` seed,
and ``[fusion | video]`` without audio. Only the blocks of the inputs given are present. No
code depends on which blocks are neighbours. A mask entry ``mask[i, j] == True`` means
*query i may attend to key j*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch

#: Name of the block of learned fusion tokens (and of the return token that pools them).
FUSION = "fusion"
#: Name of the return token that pools every token.
GLOBAL = "global"
#: Names a modality may not take.
RESERVED_NAMES: tuple[str, ...] = (FUSION, GLOBAL)

#: What a key may be, seen from a query: in the query's own block, in another modality's
#: block, or in the fusion block (when the query is not a fusion token itself).
OWN, MODALITY, FUSION_KEY = "own", "modality", "fusion"

#: Self-attention rules: ``mask_rule`` name -> query role -> the key kinds it may attend to.
SELF_ATTENTION_RULES: dict[str, dict[str, tuple[str, ...]]] = {
    "zorro": {"modality": (OWN,), "fusion": (OWN, MODALITY)},
    "full": {"modality": (OWN, MODALITY, FUSION_KEY), "fusion": (OWN, MODALITY)},
    "bottleneck": {"modality": (OWN, FUSION_KEY), "fusion": (OWN, MODALITY)},
}

#: The valid values of ``ZorroConfig.mask_rule``; ``"zorro"`` is the default.
MASK_RULES: tuple[str, ...] = tuple(SELF_ATTENTION_RULES)

#: Pooling: a modality's return token sees its own modality, ``fusion`` the fusion tokens,
#: ``global`` everything (the same table shape as the self-attention rules).
POOL_RULE: dict[str, tuple[str, ...]] = {"modality": (OWN,), "fusion": (OWN,), "global": (OWN, MODALITY, FUSION_KEY)}


def check_mask_rule(name: object) -> str:
    """Validate a ``mask_rule`` name; returns it unchanged.

    Raises:
        ValueError: ``name`` is not one of :data:`MASK_RULES`.
    """
    if not isinstance(name, str) or name not in SELF_ATTENTION_RULES:
        raise ValueError(f"mask_rule must be one of {MASK_RULES}, got {name!r}")
    return name


def _role(block: str) -> str:
    return block if block in (FUSION, GLOBAL) else "modality"


def allowed(query: str, key: str, rule: str | Mapping[str, tuple[str, ...]]) -> bool:
    """Whether a token of block ``query`` may attend to a token of block ``key``.

    Args:
        query: the query's block name (a modality, ``"fusion"``) or, for pooling,
            the return token's name (a modality, ``"fusion"``, ``"global"``).
        key: the key's block name (a modality or ``"fusion"``).
        rule: a ``mask_rule`` name (:data:`MASK_RULES`) or a table such as :data:`POOL_RULE`.
    """
    table = SELF_ATTENTION_RULES[check_mask_rule(rule)] if isinstance(rule, str) else rule
    kinds = table[_role(query)]
    if key == query:
        return OWN in kinds
    if key == FUSION:
        return FUSION_KEY in kinds
    return MODALITY in kinds


def block_table(queries: Sequence[str], keys: Sequence[str], rule: str | Mapping[str, tuple[str, ...]],
                device: torch.device | str | None = None) -> torch.Tensor:
    """``(len(queries), len(keys))`` bool table: may a query of each block attend to a key of each block."""
    rows = [[allowed(q, k, rule) for k in keys] for q in queries]
    return torch.tensor(rows, dtype=torch.bool, device=device).reshape(len(queries), len(keys))


def check_modality_name(name: object) -> str:
    """Validate a modality name: a lower-case identifier, not ``fusion`` or ``global``, not
    ending in ``_mask`` or ``_features`` (those suffixes name a modality's extra inputs)."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower() or name.startswith("_"):
        raise ValueError(f"a modality name must be a lower-case Python identifier (e.g. 'audio', 'text', 'imu'), got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} cannot name a modality: {RESERVED_NAMES} name the fusion tokens and the global output")
    if name.endswith(("_mask", "_features")):
        raise ValueError(f"a modality name may not end in '_mask' or '_features' (those name extra inputs), got {name!r}")
    return name


@dataclass(frozen=True)
class TokenLayout:
    """The blocks of one packed sequence, in order: ``((name, count), ...)``.

    Build it with :meth:`packed` from the modality token counts; the fusion block is named
    :data:`FUSION`. ``TokenLayout.audio_video(n_a, n_f, n_v)`` gives the default model's
    ``[audio | fusion | video]`` layout.
    """

    blocks: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.blocks]
        if len(set(names)) != len(names):
            raise ValueError(f"block names must be unique, got {names}")
        for name, count in self.blocks:
            if not isinstance(count, int) or count < 0:
                raise ValueError(f"block {name!r} must hold an int >= 0 tokens, got {count!r}")

    @classmethod
    def packed(cls, modalities: Iterable[tuple[str, int]], num_fusion: int, first: str | None = None) -> "TokenLayout":
        """The layout of the given modality blocks ``(name, count)`` (in table order) with the
        fusion block after the block named ``first`` (the table's first modality) when it is
        given, and at the start otherwise: ``[audio | fusion | video]``, ``[fusion | video]``."""
        mods = list(modalities)
        cut = 1 if mods and first is not None and mods[0][0] == first else 0
        return cls(tuple(mods[:cut]) + ((FUSION, num_fusion),) + tuple(mods[cut:]))

    @classmethod
    def audio_video(cls, num_audio: int, num_fusion: int, num_video: int) -> "TokenLayout":
        """``[audio | fusion | video]`` with the given counts (a count of 0 keeps the block, empty)."""
        return cls((("audio", num_audio), (FUSION, num_fusion), ("video", num_video)))

    @property
    def names(self) -> tuple[str, ...]:
        """Block names in sequence order."""
        return tuple(name for name, _ in self.blocks)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Names of the modality blocks, in sequence order."""
        return tuple(name for name, _ in self.blocks if name != FUSION)

    @property
    def counts(self) -> tuple[int, ...]:
        """Token count of each block, in sequence order."""
        return tuple(count for _, count in self.blocks)

    @property
    def total(self) -> int:
        """Sequence length ``n``."""
        return sum(self.counts)

    def count(self, name: str) -> int:
        """Tokens in block ``name`` (0 when it is absent); ``"global"``: all of them."""
        if name == GLOBAL:
            return self.total
        return dict(self.blocks).get(name, 0)

    def span(self, name: str) -> slice:
        """Positions of block ``name`` in the sequence."""
        start = 0
        for block, count in self.blocks:
            if block == name:
                return slice(start, start + count)
            start += count
        raise ValueError(f"the sequence has no block {name!r}; its blocks are {self.names}")

    def block_ids(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(n,)`` int64: the index (into :attr:`names`) of the block of every position."""
        return torch.repeat_interleave(torch.arange(len(self.blocks), device=device),  # output_size: a static shape under torch.compile
                                       torch.tensor(self.counts, device=device), output_size=self.total)

    def key_blocks(self, query: str, rule: str | Mapping[str, tuple[str, ...]]) -> tuple[int, ...]:
        """Indices of the non-empty blocks a query of ``query`` may attend to under ``rule``."""
        return tuple(j for j, (key, count) in enumerate(self.blocks) if count and allowed(query, key, rule))

    def dense_mask(self, rule: str | Mapping[str, tuple[str, ...]], queries: Sequence[str] | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
        """Dense boolean mask: ``(n, n)`` for self-attention, or ``(len(queries), n)`` for the
        return tokens named in ``queries`` (with ``rule=POOL_RULE``)."""
        ids = self.block_ids(device)
        if queries is None:
            return block_table(self.names, self.names, rule, device)[ids[:, None], ids[None, :]]
        return block_table(list(queries), self.names, rule, device)[:, ids]
