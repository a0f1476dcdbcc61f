"""Normalisation statistics of a dataset's audio features over real signal only.

A clip shorter than the window it is read in is zero padded (``Clip.audio_valid_samples``
says how much is real). Features of the padding are those of digital silence: counting them
drags the mean towards the log floor and shrinks the spread (0.3-1 s clips read in a 10 s
window: mean -15.6 / std 1.9 instead of -12.6 / 5.0). :class:`RealAudioStats` therefore keeps,
for each clip, only the leading feature frames whose analysis window lies inside its real
samples (:func:`real_frames`), and also measures how long the clips really are, which is
what ``data.duration`` should be chosen from.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from zorro.audio import AudioFrontend

__all__ = ["RealAudioStats", "real_frames"]


def real_frames(frontend: AudioFrontend, num_samples: int, valid_samples: int) -> int:
    """How many leading frames of ``frontend``'s features of a ``num_samples`` waveform
    are computed from real samples only, when its first ``valid_samples`` are real and the
    rest is padding (all frames when nothing is padding)."""
    total = frontend.num_frames(num_samples)
    if valid_samples >= num_samples:
        return max(total, 0)
    if valid_samples <= 0:
        return 0
    if frontend.kind == "fbank":
        return max(0, min(total, frontend.num_frames(valid_samples)))
    hop, n_fft, pad = frontend.hop_length, frontend.n_fft, frontend.pad
    reach = n_fft - n_fft // 2 if frontend.center else n_fft  # samples a frame reads after its start (centred: after its centre)
    count = (valid_samples + pad - reach) // hop + 1
    return max(0, min(total, count))


class RealAudioStats:
    """Running mean / std of ``frontend``'s raw features over real audio, and clip lengths.

    Call :meth:`update` with batches of waveforms and their real sample counts, then
    :meth:`result`. Accumulates in float64 (shifted sums, as :func:`zorro.audio.feature_stats`).
    """

    def __init__(self, frontend: AudioFrontend) -> None:
        if not isinstance(frontend, AudioFrontend):
            raise TypeError(f"frontend must be an AudioFrontend, got {type(frontend).__name__}")
        self.frontend = frontend
        self.values = 0
        self._ref: float | None = None
        self._sum = 0.0
        self._sq = 0.0
        self.clips = 0
        self.too_short = 0  # clips whose real audio gives no whole feature frame
        self.padded_clips = 0
        self.samples = 0  # samples read (real + padding)
        self.real_samples = 0
        self.lengths: list[int] = []  # real samples per clip

    @torch.no_grad()
    def update(self, audio: Tensor, valid_samples: Tensor | None = None) -> None:
        """Add a batch: ``audio`` ``(B, L)`` float waveforms, ``valid_samples`` ``(B,)`` real
        samples at the start of each (None: all real)."""
        if audio.dim() != 2:
            raise ValueError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
        length = int(audio.shape[1])
        valid = [length] * audio.shape[0] if valid_samples is None else [min(int(v), length) for v in valid_samples.tolist()]
        feats = self.frontend.features(audio.to(self.frontend.window.device))  # (B, F, T)
        for f, v in zip(feats, valid):
            self.clips += 1
            self.samples += length
            self.real_samples += v
            self.lengths.append(v)
            self.padded_clips += int(v < length)
            keep = real_frames(self.frontend, length, v)
            if keep == 0:
                self.too_short += 1
                continue
            x = f[:, :keep].double()
            if self._ref is None:
                self._ref = float(x.mean())
            d = x - self._ref
            self._sum += float(d.sum())
            self._sq += float(d.pow(2).sum())
            self.values += x.numel()

    def result(self, sample_rate: int) -> dict[str, Any]:
        """``audio_mean`` / ``audio_std`` (unbiased) over the real frames, how many values and
        clips they come from, and the real clip lengths in seconds (``clip_seconds``: min,
        median, 90th percentile, max) with the share of padding at the window read.

        Raises:
            ValueError: no clip had a whole frame of real audio.
        """
        if self.values < 2 or self._ref is None:
            raise ValueError(f"no real audio to measure: {self.clips} clips, {self.too_short} of them shorter than one feature frame")
        mean_dev = self._sum / self.values
        var = (self._sq - self.values * mean_dev**2) / (self.values - 1)
        lengths = sorted(self.lengths)

        def quantile(q: float) -> float:
            return lengths[min(len(lengths) - 1, max(0, math.ceil(q * len(lengths)) - 1))] / sample_rate

        return {
            "audio_mean": self._ref + mean_dev,
            "audio_std": math.sqrt(max(var, 0.0)),
            "values": self.values,
            "clips": self.clips,
            "clips_too_short": self.too_short,
            "padded_clips": self.padded_clips,
            "padding_share": 1.0 - self.real_samples / self.samples if self.samples else 0.0,
            "clip_seconds": {"min": lengths[0] / sample_rate, "median": quantile(0.5), "p90": quantile(0.9),
                             "max": lengths[-1] / sample_rate},
        }
