"""A dense, seed-layout reference of the Zorro function, written from the seed's published
arithmetic (token layout, attention, pooling).

:class:`DenseZorro` computes what the ``zorro-pytorch`` seed computes, the way the seed
computes it: every layer builds the full ``(n, n)`` score matrix and removes the forbidden
entries with a boolean mask. Its parameter names and shapes are the seed's, so a seed state
dict loads into it strictly. It exists for two jobs:

* tests: :meth:`zorro.Zorro.from_zorro_pytorch` must reproduce it (parity), and its dense
  masks are independent of :mod:`zorro.masks`;
* benchmarks: the dense baseline our block-sparse attention is measured against.

``pool_rule="fixed"`` (default) uses Zorro's pooling rule: each modality's return token pools
only that modality's tokens, the fusion token the fusion tokens, the global token every
token (see docs/model.md). ``pool_rule="seed"`` reproduces the seed's operator-precedence defect, so a test can show the leak it causes.
It is not meant for training or for users' models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zorro.audio import spectrogram
from zorro.tokens import TokenTypes


class _GainNorm(nn.Module):
    """LayerNorm with learned ``gamma`` and a fixed zero ``beta`` buffer (the seed's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


class _Geglu(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=-1)
        return first * F.gelu(second)


class _DenseAttention(nn.Module):
    """Full score matrix, boolean mask (True = keep), ``-max`` fill, softmax."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        inner = dim_head * heads
        self.norm = _GainNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        ctx = x if context is None else context
        q = self.to_q(x)
        k, v = self.to_kv(ctx).chunk(2, dim=-1)

        def heads_first(t: torch.Tensor) -> torch.Tensor:  # (b, n, h*d) -> (b, h, n, d)
            return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        q, k, v = heads_first(q) * self.scale, heads_first(k), heads_first(v)
        scores = torch.einsum("bhid,bhjd->bhij", q, k)  # (b, h, n_q, n_k) -- the dense matrix
        if mask is not None:
            scores = scores.masked_fill(~mask, -torch.finfo(scores.dtype).max)
        out = torch.einsum("bhij,bhjd->bhid", scores.softmax(dim=-1), v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class _Spec(nn.Module):
    """Holds the seed's persistent ``window`` buffer and applies the power spectrogram."""

    def __init__(self, n_fft, win_length, hop_length, power, pad, center, pad_mode) -> None:
        super().__init__()
        self.args = dict(n_fft=n_fft, win_length=win_length, hop_length=hop_length, power=power, pad=pad, center=center, pad_mode=pad_mode)
        self.register_buffer("window", torch.hann_window(win_length if win_length else n_fft))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return spectrogram(wav, window=self.window, **self.args)


class _AudioPatches(nn.Module):
    def __init__(self, p1: int, p2: int) -> None:
        super().__init__()
        self.p1, self.p2 = p1, p2

    def forward(self, spec: torch.Tensor) -> torch.Tensor:  # (b, F, T) -> (b, F/p1 * T/p2, p1*p2)
        b, f, t = spec.shape
        x = spec.unflatten(1, (f // self.p1, self.p1)).unflatten(3, (t // self.p2, self.p2))  # (b, F', p1, T', p2)
        return x.permute(0, 1, 3, 2, 4).flatten(3).flatten(1, 2)


class _VideoPatches(nn.Module):
    def __init__(self, p1: int, p2: int, p3: int) -> None:
        super().__init__()
        self.p = (p1, p2, p3)

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (b, c, t, h, w) -> (b, n_v, c*p1*p2*p3)
        p1, p2, p3 = self.p
        b, c, t, h, w = video.shape
        x = video.view(b, c, t // p1, p1, h // p2, p2, w // p3, p3)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, (t // p1) * (h // p2) * (w // p3), -1)


class DenseZorro(nn.Module):
    """The seed's model in the seed's layout, with dense masked attention (reference only).

    Constructor arguments are the seed's (``spec_aug_*`` accepted and ignored, as the seed
    does). ``forward(audio=(b, samples), video=(b, c, t, h, w))`` -> ``(b, r, dim)``; both
    inputs are required, as in the seed.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        dim_head: int = 64,
        heads: int = 8,
        ff_mult: float = 4,
        num_fusion_tokens: int = 16,
        audio_patch_size: int | tuple[int, int] = 16,
        video_patch_size: int | tuple[int, int] = 16,
        video_temporal_patch_size: int = 2,
        video_channels: int = 3,
        spec_n_fft: int = 128,
        spec_power: float = 2,
        spec_win_length: int = 24,
        spec_hop_length: int | None = None,
        spec_pad: int = 0,
        spec_center: bool = True,
        spec_pad_mode: str = "reflect",
        spec_aug_stretch_factor: float = 0.8,
        spec_aug_freq_mask: int = 80,
        spec_aug_time_mask: int = 80,
        return_token_types: tuple[TokenTypes, ...] = (TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION),
        pool_rule: str = "fixed",
    ) -> None:
        super().__init__()
        if pool_rule not in ("fixed", "seed"):
            raise ValueError(f"pool_rule must be 'fixed' or 'seed', got {pool_rule!r}")
        self.pool_rule = pool_rule
        ap = audio_patch_size if isinstance(audio_patch_size, tuple) else (audio_patch_size,) * 2
        vp = video_patch_size if isinstance(video_patch_size, tuple) else (video_patch_size,) * 2
        self.audio_patch = ap
        self.video_patch = (video_temporal_patch_size, *vp)
        self.return_types = tuple(return_token_types)
        self.return_tokens = nn.Parameter(torch.randn(len(return_token_types), dim))
        self.attn_pool = _DenseAttention(dim, dim_head, heads)
        self.spec = _Spec(spec_n_fft, spec_win_length, spec_hop_length, spec_power, spec_pad, spec_center, spec_pad_mode)
        a_in = ap[0] * ap[1]
        self.audio_to_tokens = nn.Sequential(_AudioPatches(*ap), nn.LayerNorm(a_in), nn.Linear(a_in, dim), nn.LayerNorm(dim))
        v_in = video_channels * self.video_patch[0] * vp[0] * vp[1]
        self.video_to_tokens = nn.Sequential(_VideoPatches(*self.video_patch), nn.LayerNorm(v_in), nn.Linear(v_in, dim), nn.LayerNorm(dim))
        self.fusion_tokens = nn.Parameter(torch.randn(num_fusion_tokens, dim))
        inner = int(dim * ff_mult * 2 / 3)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    _DenseAttention(dim, dim_head, heads),
                    nn.Sequential(_GainNorm(dim), nn.Linear(dim, 2 * inner, bias=False), _Geglu(), nn.Linear(inner, dim, bias=False)),
                ]
            )
            for _ in range(depth)
        )
        self.norm = _GainNorm(dim)

    def forward(self, *, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """``audio (b, samples)``, ``video (b, c, t, h, w)`` -> ``(b, r, dim)``."""
        spec = self.spec(audio)
        fh, ft = spec.shape[-2] // self.audio_patch[0] * self.audio_patch[0], spec.shape[-1] // self.audio_patch[1] * self.audio_patch[1]
        audio_tokens = self.audio_to_tokens(spec[..., :fh, :ft])
        video_tokens = self.video_to_tokens(video)
        b = audio.shape[0]
        fusion = self.fusion_tokens.unsqueeze(0).expand(b, -1, -1)
        x = torch.cat([audio_tokens, fusion, video_tokens], dim=1)
        kinds = torch.cat(
            [
                torch.full((audio_tokens.shape[1],), TokenTypes.AUDIO.value),
                torch.full((fusion.shape[1],), TokenTypes.FUSION.value),
                torch.full((video_tokens.shape[1],), TokenTypes.VIDEO.value),
            ]
        ).to(x.device)
        # Self-attention: same type, or the query is a fusion token.
        rows, cols = kinds.unsqueeze(1), kinds.unsqueeze(0)
        mask = (rows == cols) | (rows == TokenTypes.FUSION.value)
        for attn, ff in self.layers:
            x = attn(x, mask=mask) + x
            x = ff(x) + x
        x = self.norm(x)
        rt_kinds = torch.tensor([t.value for t in self.return_types], device=x.device).unsqueeze(1)
        if self.pool_rule == "seed":
            # The seed's expression: `pool_mask | types == GLOBAL` groups as `(pool_mask | types) == GLOBAL`.
            pool_mask = ((rt_kinds == cols) | rt_kinds) == TokenTypes.GLOBAL.value
        else:
            pool_mask = (rt_kinds == cols) | (rt_kinds == TokenTypes.GLOBAL.value)
        queries = self.return_tokens.unsqueeze(0).expand(b, -1, -1)
        return self.attn_pool(queries, context=x, mask=pool_mask) + queries
