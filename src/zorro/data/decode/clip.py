"""What decoding returns (:class:`Clip`) and what a file holds (:class:`MediaInfo`).

Times are in seconds on the container timeline (see :mod:`zorro.data.decode`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Clip:
    """A decoded audio-video clip.

    Attributes:
        audio: ``(samples,)`` float32 mono waveform in [-1, 1] at ``sample_rate`` Hz,
            ``samples == round(duration * sample_rate)``; None when ``has_audio`` is False.
        video: ``(3, num_frames, image_size, image_size)`` float32 RGB in [0, 1] (not
            normalised); None when ``has_video`` is False.
        has_audio / has_video: whether the modality holds decoded data for this window.
        start: window start (s, on the container timeline, see module doc).
        duration: window length (s).
        path: the source file.
        sample_rate: audio rate (Hz).
        audio_valid_samples: how many of the audio samples come from decoded audio (the rest
            are zero padding); ``0`` without audio.
        video_valid_frames: how many of the frames were decoded at their time (the rest
            repeat the nearest decoded frame); ``0`` without video.
        frame_times: ``(num_frames,)`` float64 timestamps (s) of the frames used, or None.
        skipped_packets: damaged packets skipped while decoding this clip.
    """

    audio: torch.Tensor | None
    video: torch.Tensor | None
    has_audio: bool
    has_video: bool
    start: float
    duration: float
    path: str
    sample_rate: int = 16000
    audio_valid_samples: int = 0
    video_valid_frames: int = 0
    frame_times: torch.Tensor | None = None
    skipped_packets: int = 0

    @property
    def padded(self) -> bool:
        """True when part of a present modality is padding (the clip was shorter than the
        window, e.g. the window runs past the end of the file)."""
        audio_pad = self.has_audio and self.audio is not None and self.audio_valid_samples < self.audio.shape[0]
        video_pad = self.has_video and self.video is not None and self.video_valid_frames < self.video.shape[1]
        return bool(audio_pad or video_pad)


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds (times in s on the container timeline, see module doc).

    ``start``/``end`` delimit where all present streams have data (``start`` is the earliest
    valid window start); ``None`` fields are unknown or absent.
    """

    path: str
    has_audio: bool
    has_video: bool
    start: float
    end: float | None
    audio_start: float | None = None
    audio_end: float | None = None
    video_start: float | None = None
    video_end: float | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None

    @property
    def duration(self) -> float | None:
        """``end - start`` (s), or None when the end is unknown."""
        return None if self.end is None else max(0.0, self.end - self.start)
