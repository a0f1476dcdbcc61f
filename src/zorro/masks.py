"""The attention rules, stated once: Zorro's and the two it is compared against.

Every mask the model uses -- the dense boolean masks of the eager reference path, the
block spans of the fused path and the FlexAttention block masks -- is derived from the rule
tables below, so there is one place to read (and test) which token may attend to which.

Self-attention rules, chosen by name with ``ZorroConfig.mask_rule`` (:data:`MASK_RULES`):

* ``"zorro"`` (the default, :data:`SELF_ATTENTION_RULE`): audio attends to audio, video to
  video, fusion to everything. The audio tokens never depend on the video and vice versa,
  so the AUDIO and VIDEO outputs are modality-pure.
* ``"full"`` (:data:`FULL_ATTENTION_RULE`): every token attends to every token -- a
  vanilla multimodal transformer over the concatenated sequence.
* ``"bottleneck"`` (:data:`BOTTLENECK_RULE`): MBT's attention bottlenecks written as one
  mask over one stream: audio attends to audio and fusion, video to video and fusion,
  fusion to everything. Information crosses between the modalities only through the
  fusion tokens, but it does cross: the audio tokens see the video after two layers.

Under every rule the typed return tokens pool with :data:`POOL_RULE` (AUDIO sees audio
tokens, VIDEO video tokens, ...); what differs is what those tokens have seen.

Notation: ``n_a``, ``n_f``, ``n_v`` are the numbers of audio, fusion and video tokens. The
sequence is packed in the seed's order ``[audio | fusion | video]``. A mask entry
``mask[i, j] == True`` means *query i may attend to key j*.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zorro.tokens import TokenTypes

A, V, F, G = TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION, TokenTypes.GLOBAL

#: Order in which the token groups are packed into one sequence (the seed's order).
SEQUENCE_ORDER: tuple[TokenTypes, ...] = (A, F, V)

#: Self-attention inside every layer: query type -> key types it may attend to.
#: Audio sees audio only, video sees video only, fusion sees everything.
SELF_ATTENTION_RULE: dict[TokenTypes, tuple[TokenTypes, ...]] = {
    A: (A,),
    F: (A, F, V),
    V: (V,),
}

#: Self-attention of a vanilla multimodal transformer: every token sees every token.
FULL_ATTENTION_RULE: dict[TokenTypes, tuple[TokenTypes, ...]] = {
    A: (A, F, V),
    F: (A, F, V),
    V: (A, F, V),
}

#: Self-attention with MBT-style bottlenecks in one stream: each modality sees itself and
#: the fusion tokens, the fusion tokens see everything.
BOTTLENECK_RULE: dict[TokenTypes, tuple[TokenTypes, ...]] = {
    A: (A, F),
    F: (A, F, V),
    V: (F, V),
}

#: ``ZorroConfig.mask_rule`` name -> self-attention rule.
SELF_ATTENTION_RULES: dict[str, dict[TokenTypes, tuple[TokenTypes, ...]]] = {
    "zorro": SELF_ATTENTION_RULE,
    "full": FULL_ATTENTION_RULE,
    "bottleneck": BOTTLENECK_RULE,
}

#: The valid values of ``ZorroConfig.mask_rule``; ``"zorro"`` is the default.
MASK_RULES: tuple[str, ...] = tuple(SELF_ATTENTION_RULES)


def check_mask_rule(name: object) -> str:
    """Validate a ``mask_rule`` name; returns it unchanged.

    Raises:
        ValueError: ``name`` is not one of :data:`MASK_RULES`.
    """
    if not isinstance(name, str) or name not in SELF_ATTENTION_RULES:
        raise ValueError(f"mask_rule must be one of {MASK_RULES}, got {name!r}")
    return name


def self_attention_rule(name: str) -> dict[TokenTypes, tuple[TokenTypes, ...]]:
    """The self-attention rule (query type -> key types) of the ``mask_rule`` called ``name``."""
    return SELF_ATTENTION_RULES[check_mask_rule(name)]


#: Attention pooling: return-token type -> token types it may attend to (SPEC section 2).
POOL_RULE: dict[TokenTypes, tuple[TokenTypes, ...]] = {
    A: (A,),
    V: (V,),
    F: (F,),
    G: (A, F, V),
}


def rule_table(rule: dict[TokenTypes, tuple[TokenTypes, ...]]) -> torch.Tensor:
    """Return the rule as a ``(4, 4)`` bool table indexed by ``[query.value, key.value]``."""
    table = torch.zeros(len(TokenTypes), len(TokenTypes), dtype=torch.bool)
    for query, keys in rule.items():
        for key in keys:
            table[query.value, key.value] = True
    return table


def dense_mask(
    query_types: torch.Tensor,
    key_types: torch.Tensor,
    rule: dict[TokenTypes, tuple[TokenTypes, ...]],
) -> torch.Tensor:
    """Dense boolean attention mask from per-token types.

    Args:
        query_types: ``(n_q,)`` int64 tensor of ``TokenTypes`` values.
        key_types: ``(n_k,)`` int64 tensor of ``TokenTypes`` values.
        rule: a self-attention rule (:data:`SELF_ATTENTION_RULES`) or :data:`POOL_RULE`.

    Returns:
        ``(n_q, n_k)`` bool tensor, True where query ``i`` may attend to key ``j``.
    """
    table = rule_table(rule).to(query_types.device)
    return table[query_types[:, None], key_types[None, :]]


@dataclass(frozen=True)
class TokenLayout:
    """How many tokens of each type a packed ``[audio | fusion | video]`` sequence holds."""

    num_audio: int
    num_fusion: int
    num_video: int

    def count(self, token_type: TokenTypes) -> int:
        """Number of tokens of ``token_type`` in the sequence (GLOBAL: all of them)."""
        if token_type is A:
            return self.num_audio
        if token_type is V:
            return self.num_video
        if token_type is F:
            return self.num_fusion
        return self.total

    @property
    def total(self) -> int:
        """Sequence length ``n = n_a + n_f + n_v``."""
        return self.num_audio + self.num_fusion + self.num_video

    def span(self, token_type: TokenTypes) -> slice:
        """Positions of one token type in the packed sequence."""
        start = 0
        for t in SEQUENCE_ORDER:
            if t is token_type:
                return slice(start, start + self.count(t))
            start += self.count(t)
        raise ValueError(f"{token_type} has no span of its own in the sequence")

    def key_span(self, query_type: TokenTypes, rule: dict[TokenTypes, tuple[TokenTypes, ...]]) -> slice:
        """The contiguous key positions a query of ``query_type`` may attend to under ``rule``.

        The packing order is chosen so that every allowed key set is one contiguous run;
        this is checked here rather than assumed.
        """
        allowed = rule[query_type]
        positions = [i for i, t in enumerate(SEQUENCE_ORDER) if t in allowed]
        if positions != list(range(positions[0], positions[-1] + 1)):
            raise ValueError(f"keys allowed for {query_type} are not contiguous in {SEQUENCE_ORDER}")
        first, last = self.span(SEQUENCE_ORDER[positions[0]]), self.span(SEQUENCE_ORDER[positions[-1]])
        return slice(first.start, last.stop)

    def token_types(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(n,)`` int64 tensor of the type of every position."""
        parts = [torch.full((self.count(t),), t.value, dtype=torch.long, device=device) for t in SEQUENCE_ORDER]
        return torch.cat(parts)
