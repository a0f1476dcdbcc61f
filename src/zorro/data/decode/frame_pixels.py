"""Decoded frames to pixels: scale, crop and flip into ``(S, S, 3)`` / ``(3, N, S, S)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from zorro.data.decode.clip import MediaInfo
from zorro.data.transforms import CropBox, ScalePlan


def _rescale_box(box: CropBox, info: MediaInfo, frame: Any) -> CropBox:
    """Map a box planned for the stream's nominal size onto a frame of another size."""
    sx = frame.width / info.width
    sy = frame.height / info.height
    return CropBox(box.x * sx, box.y * sy, box.w * sx, box.h * sy, box.flip)


def _frame_to_rgb(frame: Any, plan: ScalePlan, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Scale a decoded frame with swscale to the plan's size, crop, flip: ``(S, S, 3)`` uint8.
    ``reformatter`` (reused across calls) keeps swscale's context instead of rebuilding it."""
    if reformatter is None:
        reformatter = VideoReformatter()
    rgb = reformatter.reformat(frame, width=plan.scaled_w, height=plan.scaled_h, format="rgb24").to_ndarray()
    crop = rgb[plan.y0 : plan.y0 + plan.size, plan.x0 : plan.x0 + plan.size]
    if plan.flip:
        crop = crop[:, ::-1]
    return crop


def _resize_crop_torch(frames_nhwc: torch.Tensor, plan: ScalePlan) -> torch.Tensor:
    """Resize (bilinear, antialiased) + crop + flip uint8 ``(N, H, W, 3)`` frames into a float
    ``(3, N, S, S)`` clip in [0, 1] (the torchcodec path)."""
    x = frames_nhwc.permute(0, 3, 1, 2).float()
    if (x.shape[-2], x.shape[-1]) != (plan.scaled_h, plan.scaled_w):
        x = torch.nn.functional.interpolate(
            x, size=(plan.scaled_h, plan.scaled_w), mode="bilinear", antialias=True, align_corners=False
        )
    x = x[..., plan.y0 : plan.y0 + plan.size, plan.x0 : plan.x0 + plan.size]
    if plan.flip:
        x = x.flip(-1)
    x = x.round_().clamp_(0, 255).div_(255.0)
    return x.permute(1, 0, 2, 3).contiguous()
