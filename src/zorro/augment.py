"""Batch augmentations for two-view (intra-modal) contrastive pre-training.

These act on decoded, batched tensors inside the training objective, so a cached data set
(:class:`zorro.train.CachedClips`) still gets a fresh draw every step. All randomness comes
from ``torch``'s global generator, which the trainer checkpoints, so resumed runs draw the
same augmentations.

Why: on AV-digits the only thing an utterance and its video share is the digit, and random
initial encoders barely encode it, so the audio-video InfoNCE alone stays at ln(batch) for
hundreds of steps. Asking each encoder to also match two augmented views of its own input
(SimCLR-style) teaches it features that ignore position, brightness, timing and loudness;
what remains carries the digit and the audio-video term starts learning (see
``docs/training.md`` for the measurements).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ClipAugment", "random_translate", "random_affine_intensity", "random_time_shift"]


def _check_float(x: torch.Tensor, ndim: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dims, got shape {tuple(x.shape)}")


def random_translate(video: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift every clip by its own random whole-pixel offset, the same for all its frames.

    Args:
        video: ``(b, c, t, h, w)`` float frames.
        max_shift: largest shift in pixels along each axis (>= 0); vacated pixels are filled
            with the edge pixels (replicate padding), not wrapped.

    Returns:
        ``(b, c, t, h, w)``, same dtype.
    """
    _check_float(video, 5, "video")
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an int >= 0, got {max_shift!r}")
    if max_shift == 0:
        return video
    b, c, t, h, w = video.shape
    s = max_shift
    padded = torch.nn.functional.pad(video.reshape(b, c * t, h, w), (s, s, s, s), mode="replicate")
    offsets = torch.randint(0, 2 * s + 1, (b, 2))
    out = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets.tolist())])
    return out.reshape(b, c, t, h, w)


def random_affine_intensity(video: torch.Tensor, contrast: tuple[float, float], brightness: float) -> torch.Tensor:
    """Per-clip contrast and brightness jitter: ``(x - 0.5) * a + 0.5 + o``.

    Args:
        video: ``(b, c, t, h, w)`` float frames in [0, 1].
        contrast: range ``(low, high)`` of the factor ``a`` (> 0).
        brightness: the offset ``o`` is uniform in ``[-brightness, brightness]``.

    Returns:
        ``(b, c, t, h, w)`` (not clipped).
    """
    _check_float(video, 5, "video")
    lo, hi = contrast
    if not 0 < lo <= hi or brightness < 0:
        raise ValueError(f"need 0 < contrast low <= high and brightness >= 0, got {contrast}, {brightness}")
    b = video.shape[0]
    a = torch.empty(b, 1, 1, 1, 1, dtype=video.dtype).uniform_(lo, hi)
    o = torch.empty(b, 1, 1, 1, 1, dtype=video.dtype).uniform_(-brightness, brightness)
    return (video - 0.5) * a + 0.5 + o


def random_time_shift(audio: torch.Tensor, max_fraction: float) -> torch.Tensor:
    """Rotate every waveform by its own random number of samples.

    Args:
        audio: ``(b, samples)`` float waveforms.
        max_fraction: largest shift as a fraction of the length, in [0, 1).

    Returns:
        ``(b, samples)``.
    """
    _check_float(audio, 2, "audio")
    if not 0.0 <= max_fraction < 1.0:
        raise ValueError(f"max_fraction must be in [0, 1), got {max_fraction}")
    b, n = audio.shape
    m = int(max_fraction * n)
    if m == 0:
        return audio
    shifts = torch.randint(-m, m + 1, (b,))
    idx = (torch.arange(n)[None, :] - shifts[:, None]) % n
    return torch.gather(audio, 1, idx)


@dataclass
class ClipAugment:
    """The two-view augmentation of a batch of clips.

    Video: a random translation of up to ``max_shift_fraction`` of the frame side, then
    contrast/brightness jitter. Audio: a circular time shift of up to ``time_shift`` of the
    clip, a random gain, and white noise (SpecAugment, when the model has it, adds masking
    inside the model).

    Attributes:
        max_shift_fraction: translation bound as a fraction of the frame height.
        contrast: range of the contrast factor.
        brightness: bound of the brightness offset (frames in [0, 1]).
        time_shift: bound of the audio shift as a fraction of the clip.
        gain: range of the audio gain.
        noise_std: std of the added white noise (waveform units).
    """

    max_shift_fraction: float = 0.125
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: float = 0.2
    time_shift: float = 0.25
    gain: tuple[float, float] = (0.5, 1.5)
    noise_std: float = 0.005

    def video(self, video: torch.Tensor) -> torch.Tensor:
        """``(b, c, t, h, w) -> (b, c, t, h, w)``, one random draw per clip."""
        _check_float(video, 5, "video")
        shift = int(round(self.max_shift_fraction * video.shape[-2]))
        return random_affine_intensity(random_translate(video, shift), self.contrast, self.brightness)

    def audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(b, samples) -> (b, samples)``, one random draw per clip."""
        _check_float(audio, 2, "audio")
        lo, hi = self.gain
        if not 0 < lo <= hi or self.noise_std < 0:
            raise ValueError(f"need 0 < gain low <= high and noise_std >= 0, got {self.gain}, {self.noise_std}")
        out = random_time_shift(audio, self.time_shift)
        g = torch.empty(audio.shape[0], 1, dtype=audio.dtype).uniform_(lo, hi)
        return out * g + self.noise_std * torch.randn_like(out)
