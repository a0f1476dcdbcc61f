"""Patch embeddings: spectrogram patches and video tubelets to tokens."""

from __future__ import annotations

import math

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """``LayerNorm(patch) -> Linear(patch, dim) -> LayerNorm(dim)`` on flattened patches.

    Subclasses cut their input into patches; this class only embeds ``(b, n, patch_dim)``
    -> ``(b, n, dim)``.
    """

    def __init__(self, patch_dim: int, dim: int) -> None:
        super().__init__()
        self.patch_dim = patch_dim
        self.norm_in = nn.LayerNorm(patch_dim)
        self.proj = nn.Linear(patch_dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """``(b, n, patch_dim) -> (b, n, dim)``."""
        return self.norm_out(self.proj(self.norm_in(patches)))


class AudioPatchEmbed(PatchEmbed):
    """Cut a time-frequency image into ``(freq p1, time p2)`` patches and embed them.

    Patches are flattened in ``(p1 p2)`` order and tokens run frequency-major (all time
    patches of the lowest band first), as in the seed.
    """

    def __init__(self, patch_size: tuple[int, int], dim: int) -> None:
        super().__init__(math.prod(patch_size), dim)
        self.patch_size = tuple(patch_size)

    def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Embed ``spec (b, freq, frames)``, both multiples of the patch size.

        Returns ``tokens (b, F*T, dim)`` and the patch grid ``(F, T)``.
        """
        b, height, width = spec.shape
        p1, p2 = self.patch_size
        fp, tp = height // p1, width // p2
        patches = spec.reshape(b, fp, p1, tp, p2).permute(0, 1, 3, 2, 4)  # (b, F, T, p1, p2)
        return self.embed(patches.reshape(b, fp * tp, p1 * p2)), (fp, tp)


class VideoPatchEmbed(PatchEmbed):
    """Cut a video into ``(t p1, h p2, w p3)`` tubelets and embed them.

    Tubelets are flattened in ``(c p1 p2 p3)`` order and tokens run time-major, then rows,
    then columns, as in the seed.
    """

    def __init__(self, patch_size: tuple[int, int, int], channels: int, dim: int) -> None:
        super().__init__(channels * math.prod(patch_size), dim)
        self.patch_size = tuple(patch_size)
        self.channels = channels

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Embed ``video (b, c, t, h, w)`` with ``t, h, w`` multiples of the patch size.

        Returns ``tokens (b, T*H*W, dim)`` and the tubelet grid ``(T, H, W)``.
        """
        b, c, t, h, w = video.shape
        p1, p2, p3 = self.patch_size
        gt, gh, gw = t // p1, h // p2, w // p3
        x = video.reshape(b, c, gt, p1, gh, p2, gw, p3)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (b, T, H, W, c, p1, p2, p3)
        return self.embed(x.reshape(b, gt * gh * gw, self.patch_dim)), (gt, gh, gw)
