"""Tiny prepared-shard folders for the shard tests (written with zorro's ShardWriter, no media
decoding).

Sample ``k`` of :func:`make_shards`: label ``class{k % num_classes}``; audio a ramp whose
sample ``j`` is ``(k + 1) / 1000 + j / 2**20`` (so tests can tell samples and offsets apart);
``frames`` frames where frame ``f`` is a flat grey of level ``LEVEL0 + LEVEL_STEP * f`` with
a red strip (255, 0, 0) on the left quarter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LEVEL0 = 20
LEVEL_STEP = 25


def frame_level(f: int) -> int:
    """Grey level of stored frame ``f``."""
    return LEVEL0 + LEVEL_STEP * f


def sample_audio(k: int, samples: int) -> np.ndarray:
    """The stored waveform of sample ``k``: ``(samples,)`` float32."""
    return ((k + 1) / 1000.0 + np.arange(samples) / 2.0**20).astype(np.float32)


def sample_frames(frames: int, height: int, width: int) -> np.ndarray:
    """The stored frames of every sample: ``(frames, height, width, 3)`` uint8."""
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for f in range(frames):
        out[f] = frame_level(f)
        out[f, :, : width // 4] = (255, 0, 0)
    return out


def make_shards(out: str | Path, n: int = 12, *, per_shard: int = 4, num_classes: int = 3, seconds: float = 2.0,
                sample_rate: int = 8000, frames: int = 8, height: int = 24, width: int = 32,
                audio: bool = True, video: bool = True) -> Path:
    """Write ``n`` samples into ``out`` (``per_shard`` a shard); returns ``out``."""
    from zorro.data.shards import SampleData, write_samples

    labels = [f"class{c}" for c in range(num_classes)]
    pics = sample_frames(frames, height, width) if video else None
    samples = [
        SampleData(labels=(labels[k % num_classes],), audio=sample_audio(k, int(seconds * sample_rate)) if audio else None,
                   frames=pics, start=0.0, end=seconds, path=f"media/clip{k:03d}.mp4")
        for k in range(n)
    ]
    write_samples(out, samples, labels=labels, samples_per_shard=per_shard, sample_rate=sample_rate)
    return Path(out)
