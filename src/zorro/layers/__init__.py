"""Building blocks of the Zorro model: attention, feed-forward, norms, embeddings."""

from zorro.layers.attention import BACKENDS, AttentionPlan, AttentionPool, SelfAttention, eager_attention
from zorro.layers.feedforward import FeedForward, ff_inner_dim
from zorro.layers.norm import LayerNorm
from zorro.layers.patch_embed import AudioPatchEmbed, VideoPatchEmbed
from zorro.layers.pos_embed import sincos_grid

__all__ = [
    "BACKENDS",
    "AttentionPlan",
    "AttentionPool",
    "AudioPatchEmbed",
    "FeedForward",
    "LayerNorm",
    "SelfAttention",
    "VideoPatchEmbed",
    "eager_attention",
    "ff_inner_dim",
    "sincos_grid",
]
