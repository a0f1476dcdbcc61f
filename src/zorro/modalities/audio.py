"""The ``audio`` modality kind: mono waveforms -> front-end features -> patch tokens.

Input ``(b, samples)`` float waveforms at the front-end's ``sample_rate`` (Hz), or, as the
extra input ``<name>_features``, raw front-end features ``(b, F, T)`` computed earlier. The
front-end (:class:`zorro.audio.AudioFrontend`: the Kaldi log-mel ``fbank`` or the seed's power
``spectrogram``) gives ``(b, F, T)`` features; they are cropped to whole ``(p1, p2)`` patches,
cut into patches flattened in ``(p1 p2)`` order, frequency-major, and embedded.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from zorro.audio import AudioFrontend
from zorro.audio_crop import warn_audio_crop
from zorro.layers.patch_embed import AudioPatchEmbed
from zorro.modalities.base import ModalityTokens, PositionTable

__all__ = ["AudioTokenizer", "AUDIO_OPTIONS"]

logger = logging.getLogger(__name__)

#: The options of the audio kind with their defaults (the same names as :class:`zorro.ZorroConfig`'s
#: flat audio settings; units there).
AUDIO_OPTIONS: dict[str, Any] = {
    "audio_patch_size": 16,
    "audio_frontend": "fbank",
    "sample_rate": 16000,
    "fbank_num_mel_bins": 128,
    "fbank_frame_length": 25.0,
    "fbank_frame_shift": 10.0,
    "audio_mean": None,
    "audio_std": None,
    "spec_n_fft": 128,
    "spec_power": 2,
    "spec_win_length": 24,
    "spec_hop_length": None,
    "spec_pad": 0,
    "spec_center": True,
    "spec_pad_mode": "reflect",
    "spec_aug_stretch_factor": 0.8,
    "spec_aug_freq_mask": 80,
    "spec_aug_time_mask": 80,
}


def _pair(x: Any, name: str) -> tuple[int, int]:
    if isinstance(x, int) and not isinstance(x, bool):
        return (x, x)
    if isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in x):
        return (int(x[0]), int(x[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {x!r}")


class AudioTokenizer(AudioPatchEmbed):
    """Waveforms (or cached front-end features) -> audio patch tokens ``(b, F*T, dim)``.

    Args:
        dim: model width ``D``.
        pos_embed: ``"sincos"`` adds a fixed sine-cosine embedding of the ``(freq, time)``
            patch grid; ``"none"`` adds nothing (the seed).
        **options: :data:`AUDIO_OPTIONS` (patch size, front-end kind and geometry,
            normalisation, SpecAugment).

    Attributes:
        frontend: the :class:`~zorro.audio.AudioFrontend` (no learned weights).
        patch_size: ``(p1, p2)`` (frequency bins, frames).
    """

    def __init__(self, dim: int, *, pos_embed: str = "sincos", **options: Any) -> None:
        unknown = sorted(set(options) - set(AUDIO_OPTIONS))
        if unknown:
            raise ValueError(f"unknown audio options {unknown}; the audio kind takes {sorted(AUDIO_OPTIONS)}")
        o = {**AUDIO_OPTIONS, **options}
        super().__init__(_pair(o["audio_patch_size"], "audio_patch_size"), dim)
        self.frontend = AudioFrontend(
            o["audio_frontend"], sample_rate=o["sample_rate"], n_fft=o["spec_n_fft"], win_length=o["spec_win_length"],
            hop_length=o["spec_hop_length"], power=o["spec_power"], pad=o["spec_pad"], center=o["spec_center"],
            pad_mode=o["spec_pad_mode"], num_mel_bins=o["fbank_num_mel_bins"], frame_length=o["fbank_frame_length"],
            frame_shift=o["fbank_frame_shift"], mean=o["audio_mean"], std=o["audio_std"],
            spec_aug_freq_mask=o["spec_aug_freq_mask"], spec_aug_time_mask=o["spec_aug_time_mask"],
            spec_aug_stretch_factor=o["spec_aug_stretch_factor"],
        )
        if self.frontend.num_freq_bins < self.patch_size[0]:
            raise ValueError(
                f"the audio front-end gives {self.frontend.num_freq_bins} frequency bins, fewer than the "
                f"audio patch height {self.patch_size[0]}"
            )
        self.pos_embed = pos_embed
        self.positions = PositionTable(dim)

    def check(self, audio: Any) -> torch.Tensor:
        """Validate a waveform batch ``(b, samples)`` (type, dtype, rank); returns it."""
        if not isinstance(audio, torch.Tensor):
            raise TypeError(f"audio must be a torch.Tensor of shape (batch, samples), got {type(audio).__name__}")
        if not audio.is_floating_point():
            raise TypeError(f"audio must be a floating-point waveform in [-1, 1], got dtype {audio.dtype}")
        if audio.dim() != 2:
            hint = " (a channel dimension? mix to mono with audio.mean(dim=1))" if audio.dim() == 3 else ""
            hint = " (one clip? use audio[None])" if audio.dim() == 1 else hint
            raise ValueError(f"audio must have shape (batch, samples), got {tuple(audio.shape)}{hint}")
        return audio

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Front-end features cropped to whole patches: ``(b, samples) -> (b, F, T)`` float32.

        Raises ``ValueError`` when not even one patch fits.
        """
        audio = self.check(audio)
        frames = self.frontend.num_frames(audio.shape[-1])
        if frames < self.patch_size[1]:
            need = self.frontend.min_num_samples(self.patch_size[1])
            raise ValueError(
                f"audio too short: {audio.shape[-1]} samples give {max(frames, 0)} frames, fewer than one audio patch "
                f"({self.patch_size[1]} frames); need at least {need} samples"
            )
        return self.crop(self.frontend(audio))  # (b, F, T)

    def prepare_features(self, features: torch.Tensor) -> torch.Tensor:
        """Raw front-end features ``(b, F, T)`` computed earlier -> normalised, SpecAugment-ed in
        training mode and cropped to whole patches, as :meth:`features` would give."""
        spec = self.frontend.postprocess(features)  # checks (b, F, T)
        if spec.shape[-1] < self.patch_size[1]:
            raise ValueError(f"audio features have {spec.shape[-1]} frames, fewer than one audio patch ({self.patch_size[1]} frames)")
        return self.crop(spec)

    def crop(self, spec: torch.Tensor) -> torch.Tensor:
        """``(b, F, T)`` -> the largest ``(b, F', T')`` of whole patches; warns once per run
        when that loses something worth saying (:func:`zorro.audio_crop.warn_audio_crop`)."""
        p1, p2 = self.patch_size
        height, width = spec.shape[-2:]
        rh, rw = height // p1 * p1, width // p2 * p2
        if (rh, rw) != (height, width) and not torch.compiler.is_compiling():
            warn_audio_crop(height, width, self.patch_size, self.frontend)
        return spec[:, :rh, :rw]

    def forward(self, audio: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> ModalityTokens:
        """Tokens of ``audio (b, samples)`` or of raw front-end ``features (b, F, T)``:
        ``(b, F'*T', D)`` with the ``(freq, time)`` patch grid."""
        if audio is not None and features is not None:
            raise ValueError("give audio (waveforms) or audio_features (front-end features), not both")
        spec = self.features(audio) if features is None else self.prepare_features(features)
        tokens, grid = super().forward(spec)
        if self.pos_embed == "sincos":
            tokens = tokens + self.positions(grid, tokens.device, tokens.dtype)
        return ModalityTokens(tokens, None, grid)
