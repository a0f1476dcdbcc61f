"""Spatial geometry for clips (centre crop, random-resized crop, flip) and normalisation.

Crops are expressed as a :class:`CropBox` in *source* pixel coordinates. The decoder turns a
box into one scaling pass (``VideoFrame.reformat`` to a size at which the box becomes
``image_size`` pixels square) followed by an integer crop, so full-resolution frames are never
converted to RGB arrays. Every frame of a clip uses the same box and flip.

:class:`VideoTransform` is the one place for the crop / resize / normalise parameters
(output size, random-resized-crop area and aspect ranges, flip probability, normalisation
mean and std) and their checks: :class:`~zorro.data.ClipDataset`,
:class:`~zorro.data.ShardDataset` and :meth:`zorro.data.MediaReader.read` all take their
defaults from here (:data:`CROP_SCALE`, :data:`CROP_RATIO`, :data:`HFLIP_PROB`,
:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: random-resized crop: area fraction of the frame, aspect ratio (w/h) range, flip probability
CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
HFLIP_PROB = 0.5


@dataclass(frozen=True)
class CropBox:
    """A crop in source pixels: top-left ``(x, y)``, size ``(w, h)``; ``flip`` mirrors it
    horizontally after cropping."""

    x: float
    y: float
    w: float
    h: float
    flip: bool = False


@dataclass(frozen=True)
class ScalePlan:
    """How to realise a :class:`CropBox` at ``size`` × ``size``: scale the full frame to
    ``(scaled_w, scaled_h)`` pixels, then take rows ``y0:y0+size`` and columns
    ``x0:x0+size``; mirror if ``flip``."""

    scaled_w: int
    scaled_h: int
    x0: int
    y0: int
    size: int
    flip: bool


def center_crop_box(width: int, height: int) -> CropBox:
    """The largest centred square of a ``width`` × ``height`` frame (short side kept whole):
    resizing it to ``image_size`` is "resize the short side, then centre-crop"."""
    _check_size(width, height)
    s = min(width, height)
    return CropBox((width - s) / 2.0, (height - s) / 2.0, float(s), float(s))


def random_resized_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    scale: Sequence[float] = CROP_SCALE,
    ratio: Sequence[float] = CROP_RATIO,
    hflip_prob: float = HFLIP_PROB,
) -> CropBox:
    """Sample a random-resized-crop box (area fraction in ``scale``, aspect ratio w/h
    log-uniform in ``ratio``) and a horizontal flip with probability ``hflip_prob``.

    Falls back to the centre square after 10 rejected draws.
    """
    _check_size(width, height)
    if not (0.0 < scale[0] <= scale[1] <= 1.0):
        raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
    if not (0.0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
    if not (0.0 <= hflip_prob <= 1.0):
        raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
    area = float(width * height)
    box = None
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = math.sqrt(target * aspect)
        h = math.sqrt(target / aspect)
        if 1.0 <= w <= width and 1.0 <= h <= height:
            x = rng.uniform(0.0, width - w)
            y = rng.uniform(0.0, height - h)
            box = (x, y, w, h)
            break
    if box is None:
        c = center_crop_box(width, height)
        box = (c.x, c.y, c.w, c.h)
    flip = bool(rng.uniform() < hflip_prob)
    return CropBox(*box, flip=flip)


@dataclass(frozen=True)
class VideoTransform:
    """How frames become a model's input: the crop (random-resized for training, the centred
    square of the short side for evaluation), the output size and the normalisation.

    Attributes:
        image_size: output side ``S`` (pixels): clips are ``(3, T, S, S)``.
        scale: random-resized crop area as a fraction of the frame, ``(min, max)`` in (0, 1].
        ratio: random-resized crop aspect ratio w/h, ``(min, max)``, drawn log-uniformly.
        hflip_prob: probability of a horizontal flip (training).
        mean, std: per-channel (RGB) normalisation ``(x - mean) / std`` of [0, 1] pixels.

    Raises:
        ValueError: a non-positive size, ranges out of order or out of bounds, a flip
            probability outside [0, 1], ``mean``/``std`` without 3 values or ``std <= 0``.
    """

    image_size: int = 224
    scale: tuple[float, float] = CROP_SCALE
    ratio: tuple[float, float] = CROP_RATIO
    hflip_prob: float = HFLIP_PROB
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, (int, np.integer)) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        for name in ("scale", "ratio", "mean", "std"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "image_size", int(self.image_size))
        if len(self.scale) != 2 or not (0.0 < self.scale[0] <= self.scale[1] <= 1.0):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if len(self.ratio) != 2 or not (0.0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        if not (0.0 <= float(self.hflip_prob) <= 1.0):
            raise ValueError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")
        object.__setattr__(self, "hflip_prob", float(self.hflip_prob))
        if len(self.mean) != 3 or len(self.std) != 3 or any(v <= 0 for v in self.std):
            raise ValueError(f"mean and std need 3 values (RGB, std > 0), got {self.mean} and {self.std}")

    def crop_box(self, width: int, height: int, rng: np.random.Generator | None, *, train: bool) -> CropBox:
        """The crop of a ``width`` × ``height`` frame: random-resized with a flip when
        ``train`` (drawn from ``rng``), else the centred square of the short side."""
        if train:
            if rng is None:
                raise ValueError("a training crop needs an rng")
            return random_resized_crop_box(width, height, rng, scale=self.scale, ratio=self.ratio, hflip_prob=self.hflip_prob)
        return center_crop_box(width, height)

    def normalize(self, video: torch.Tensor) -> torch.Tensor:
        """``(3, T, H, W)`` float [0, 1] -> ``(x - mean) / std``."""
        return normalize_video(video, self.mean, self.std)


def plan_scale(box: CropBox, width: int, height: int, size: int) -> ScalePlan:
    """Turn ``box`` (in a ``width`` × ``height`` frame) into a :class:`ScalePlan` that yields a
    ``size`` × ``size`` crop (the box may be stretched if it is not square)."""
    _check_size(width, height)
    if size < 1:
        raise ValueError(f"image_size must be a positive int, got {size}")
    sx = size / box.w
    sy = size / box.h
    sw = max(size, int(round(width * sx)))
    sh = max(size, int(round(height * sy)))
    x0 = int(round(box.x * sx))
    y0 = int(round(box.y * sy))
    x0 = min(max(x0, 0), sw - size)
    y0 = min(max(y0, 0), sh - size)
    return ScalePlan(sw, sh, x0, y0, size, box.flip)


def normalize_video(
    video: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """Per-channel normalisation of a ``(3, T, H, W)`` clip in [0, 1]: ``(x - mean) / std``."""
    if not isinstance(video, torch.Tensor) or video.dim() != 4:
        raise ValueError(f"video must be a (C, T, H, W) tensor, got {getattr(video, 'shape', type(video))}")
    c = video.shape[0]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std need {c} values (one per channel), got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {tuple(std)}")
    m = torch.tensor(mean, dtype=video.dtype).view(c, 1, 1, 1)
    s = torch.tensor(std, dtype=video.dtype).view(c, 1, 1, 1)
    return (video - m) / s


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
