"""The ``video`` modality kind: ``(b, c, t, h, w)`` frames -> tubelet tokens.

Tubelets of ``(t p1, h p2, w p3)`` are flattened in ``(c p1 p2 p3)`` order, time-major, and
embedded. A one-frame video (``video_temporal_patch_size=1``, ``t=1``) is an image.
"""

from __future__ import annotations

from typing import Any

import torch

from zorro.layers.patch_embed import VideoPatchEmbed
from zorro.modalities.audio import _pair
from zorro.modalities.base import ModalityTokens, PositionTable

__all__ = ["VideoTokenizer", "VIDEO_OPTIONS"]

#: The options of the video kind with their defaults (the names of :class:`zorro.ZorroConfig`'s
#: flat video settings): tubelet ``(h, w)`` in pixels, frames per tubelet, colour channels.
VIDEO_OPTIONS: dict[str, Any] = {"video_patch_size": 16, "video_temporal_patch_size": 2, "video_channels": 3}


class VideoTokenizer(VideoPatchEmbed):
    """Float frames ``(b, c, t, h, w)`` -> tubelet tokens ``(b, T*H*W, dim)``.

    Args:
        dim: model width ``D``.
        pos_embed: ``"sincos"`` (fixed embedding of the ``(T, H, W)`` grid) or ``"none"``.
        **options: :data:`VIDEO_OPTIONS`.
    """

    def __init__(self, dim: int, *, pos_embed: str = "sincos", **options: Any) -> None:
        unknown = sorted(set(options) - set(VIDEO_OPTIONS))
        if unknown:
            raise ValueError(f"unknown video options {unknown}; the video kind takes {sorted(VIDEO_OPTIONS)}")
        o = {**VIDEO_OPTIONS, **options}
        for name in ("video_temporal_patch_size", "video_channels"):
            if not isinstance(o[name], int) or isinstance(o[name], bool) or o[name] < 1:
                raise ValueError(f"{name} must be a positive int, got {o[name]!r}")
        patch = (o["video_temporal_patch_size"], *_pair(o["video_patch_size"], "video_patch_size"))
        super().__init__(patch, o["video_channels"], dim)
        self.pos_embed = pos_embed
        self.positions = PositionTable(dim)

    def check(self, video: Any) -> torch.Tensor:
        """Validate frames ``(b, c, t, h, w)``: float, the configured channels, whole tubelets."""
        c = self.channels
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"video must be a torch.Tensor of shape (batch, channels, frames, height, width), got {type(video).__name__}")
        if not video.is_floating_point():
            raise TypeError(f"video must be floating point (convert uint8 frames with .float() / 255 and normalise), got dtype {video.dtype}")
        if video.dim() != 5:
            raise ValueError(f"video must have shape (batch, {c}, frames, height, width), got {tuple(video.shape)}")
        if video.shape[1] != c:
            raise ValueError(f"video must have {c} channels in dim 1, shape (batch, {c}, frames, height, width); got {tuple(video.shape)}")
        thw = tuple(video.shape[2:])
        if any(size % patch for size, patch in zip(thw, self.patch_size)) or any(s == 0 for s in thw):
            raise ValueError(f"video (frames, height, width) = {thw} must be non-zero multiples of the tubelet size {self.patch_size}")
        return video

    def forward(self, video: torch.Tensor) -> ModalityTokens:
        """``(b, c, t, h, w) -> (b, n_v, D)`` tokens and the ``(T, H, W)`` tubelet grid."""
        tokens, grid = super().forward(self.check(video))
        if self.pos_embed == "sincos":
            tokens = tokens + self.positions(grid, tokens.device, tokens.dtype)
        return ModalityTokens(tokens, None, grid)
