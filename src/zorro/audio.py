"""Audio front-end: waveform -> time-frequency "image" for the audio patch embedding.

Two feature kinds, both without a torchaudio dependency:

* ``"spectrogram"`` -- the seed's power spectrogram, with the semantics of
  ``torchaudio.transforms.Spectrogram`` (see :func:`spectrogram`).
* ``"fbank"`` -- the Kaldi-compatible log-mel filterbank used by AST, CAV-MAE, ImageBind and
  MBT, equal to ``torchaudio.compliance.kaldi.fbank(..., htk_compat=True, use_energy=False,
  window_type='hanning', dither=0.0)`` (see :func:`fbank`).

:class:`AudioFrontend` wraps either kind as an ``nn.Module`` with optional dataset
normalisation and SpecAugment (training mode only). Its output is always
``(batch, num_freq_bins, frames)`` float32: frequency is the image height, time its width.

Shape letters used below: ``B`` batch, ``L`` samples, ``F`` frequency bins (or mel bins),
``T`` frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "AudioFrontend",
    "compute_audio_stats",
    "fbank",
    "fbank_num_frames",
    "feature_stats",
    "kaldi_mel_banks",
    "kaldi_mel_centres",
    "spec_augment",
    "spectrogram",
    "spectrogram_num_frames",
]

logger = logging.getLogger(__name__)

FRONTEND_KINDS = ("spectrogram", "fbank")
KALDI_WINDOW_TYPES = ("hanning", "hamming", "povey", "rectangular", "blackman")

# Kaldi fbank options fixed by the "fbank" front-end (torchaudio's defaults, issue 4's window).
_KALDI_PREEMPHASIS = 0.97
_KALDI_LOW_FREQ_HZ = 20.0
_KALDI_WINDOW = "hanning"

# Kaldi floors mel energies at float32 machine epsilon before the log, whatever the dtype.
_LOG_FLOOR = float(torch.finfo(torch.float32).eps)


# --------------------------------------------------------------------------------------------
# input validation helpers
# --------------------------------------------------------------------------------------------


def _check_waveform(waveform: object, name: str = "waveform") -> Tensor:
    if not isinstance(waveform, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of samples, got {type(waveform).__name__}")
    if not (waveform.is_floating_point()):
        raise TypeError(
            f"{name} must be a floating-point tensor of samples (e.g. float32 in [-1, 1]), "
            f"got dtype {waveform.dtype}"
        )
    if waveform.dim() < 1:
        raise ValueError(f"{name} must have a samples dimension, got a 0-d tensor")
    return waveform


def _check_finite(waveform: Tensor, name: str = "waveform") -> None:
    """Eager-mode NaN/Inf check; skipped while tracing for torch.compile/export (no sync)."""
    if torch.compiler.is_compiling():
        return
    if waveform.numel() and not bool(torch.isfinite(waveform).all()):
        n_bad = int((~torch.isfinite(waveform)).sum())
        raise ValueError(f"{name} contains {n_bad} NaN/Inf sample(s); expected finite samples")


# --------------------------------------------------------------------------------------------
# spectrogram (torchaudio.transforms.Spectrogram semantics)
# --------------------------------------------------------------------------------------------


def _resolve_stft_lengths(n_fft: int, win_length: int | None, hop_length: int | None) -> tuple[int, int]:
    if not isinstance(n_fft, int) or n_fft < 1:
        raise ValueError(f"n_fft must be a positive int, got {n_fft!r}")
    win = n_fft if win_length is None else win_length
    if not isinstance(win, int) or not 1 <= win <= n_fft:
        raise ValueError(f"win_length must be an int in [1, n_fft={n_fft}], got {win_length!r}")
    hop = win // 2 if hop_length is None else hop_length
    if not isinstance(hop, int) or hop < 1:
        raise ValueError(
            f"hop_length must be a positive int (default win_length // 2 = {win // 2}), got {hop_length!r}"
        )
    return win, hop


def spectrogram_num_frames(
    num_samples: int, n_fft: int = 400, win_length: int | None = None, hop_length: int | None = None,
    pad: int = 0, center: bool = True,
) -> int:
    """Number of frames :func:`spectrogram` returns for ``num_samples`` samples (<= 0: too short)."""
    _, hop = _resolve_stft_lengths(n_fft, win_length, hop_length)
    length = num_samples + 2 * pad
    if center:
        return length // hop + 1
    return (length - n_fft) // hop + 1 if length >= n_fft else 0


def spectrogram(
    waveform: Tensor,
    n_fft: int = 400,
    win_length: int | None = None,
    hop_length: int | None = None,
    power: float | None = 2.0,
    pad: int = 0,
    center: bool = True,
    pad_mode: str = "reflect",
    normalized: bool | str = False,
    onesided: bool = True,
    *,
    window: Tensor | None = None,
) -> Tensor:
    """Power (or magnitude, or complex) spectrogram with ``torchaudio.transforms.Spectrogram`` semantics.

    Args:
        waveform: ``(..., L)`` floating-point samples.
        n_fft: FFT size (samples); the output has ``n_fft // 2 + 1`` bins when ``onesided``.
        win_length: analysis window length (samples), default ``n_fft``. The periodic Hann window
            of this length is zero-padded on both sides (centred) to ``n_fft``.
        hop_length: frame step (samples), default ``win_length // 2``.
        power: exponent of the magnitude (2.0 = power, 1.0 = magnitude); ``None`` returns the
            complex STFT.
        pad: zeros added on both sides of the waveform before the STFT (samples).
        center: pad ``n_fft // 2`` samples on both sides with ``pad_mode`` so frame ``t`` is
            centred at sample ``t * hop_length`` (as ``torch.stft``).
        pad_mode: padding mode for ``center`` ("reflect", "constant", "replicate", "circular").
        normalized: ``False``; ``True`` or ``"window"`` divides by the window's L2 norm;
            ``"frame_length"`` uses ``torch.stft(normalized=True)`` (divides by ``sqrt(n_fft)``).
        onesided: keep only the non-negative frequencies.
        window: optional precomputed window of length ``win_length`` (overrides the Hann window).

    Returns:
        ``(..., n_fft // 2 + 1, T)`` (``n_fft`` bins if not onesided), with
        ``T = (L + 2 * pad) // hop_length + 1`` when ``center`` else
        ``(L + 2 * pad - n_fft) // hop_length + 1``; real of the input's dtype unless
        ``power is None``.
    """
    waveform = _check_waveform(waveform)
    win, hop = _resolve_stft_lengths(n_fft, win_length, hop_length)
    if pad < 0:
        raise ValueError(f"pad must be >= 0 samples, got {pad}")
    if normalized not in (False, True, "window", "frame_length"):
        raise ValueError(f"normalized must be a bool, 'window' or 'frame_length', got {normalized!r}")
    if power is not None and power <= 0:
        raise ValueError(f"power must be > 0 or None (complex output), got {power}")
    num_samples = waveform.shape[-1]
    length = num_samples + 2 * pad
    if center and pad_mode == "reflect" and length <= n_fft // 2:
        raise ValueError(
            f"waveform too short: {num_samples} samples (+2*pad={2 * pad}) but reflect padding for "
            f"center=True needs more than n_fft // 2 = {n_fft // 2}"
        )
    if not center and length < n_fft:
        raise ValueError(
            f"waveform too short: {num_samples} samples (+2*pad={2 * pad}) but center=False needs at "
            f"least n_fft = {n_fft} for one frame"
        )
    if window is None:
        window = torch.hann_window(win, periodic=True, dtype=waveform.dtype, device=waveform.device)
    elif window.shape != (win,):
        raise ValueError(f"window must have shape ({win},), got {tuple(window.shape)}")

    if pad > 0:
        waveform = F.pad(waveform, (pad, pad))
    batch_shape = waveform.shape[:-1]
    flat = waveform.reshape(-1, waveform.shape[-1])  # (B*, L)
    stft = torch.stft(
        flat, n_fft=n_fft, hop_length=hop, win_length=win, window=window, center=center,
        pad_mode=pad_mode, normalized=normalized == "frame_length", onesided=onesided,
        return_complex=True,
    )  # (B*, F, T) complex
    stft = stft.reshape(batch_shape + stft.shape[-2:])  # (..., F, T)
    if normalized is True or normalized == "window":
        stft = stft / window.pow(2).sum().sqrt()
    if power is None:
        return stft
    if power == 1.0:
        return stft.abs()
    return stft.abs().pow(power)


# --------------------------------------------------------------------------------------------
# Kaldi-compatible log-mel filterbank
# --------------------------------------------------------------------------------------------


def _kaldi_frame_geometry(
    sample_rate: float, frame_length: float, frame_shift: float, round_to_power_of_two: bool = True
) -> tuple[int, int, int]:
    """(window_size, window_shift, fft_size) in samples, Kaldi's truncation rules."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0 Hz, got {sample_rate}")
    if frame_length <= 0 or frame_shift <= 0:
        raise ValueError(
            f"frame_length and frame_shift must be > 0 ms, got {frame_length} and {frame_shift}"
        )
    size = int(sample_rate * frame_length * 0.001)
    shift = int(sample_rate * frame_shift * 0.001)
    if size < 2 or shift < 1:
        raise ValueError(
            f"frame_length={frame_length} ms / frame_shift={frame_shift} ms at {sample_rate} Hz give a "
            f"window of {size} and a shift of {shift} samples; expected >= 2 and >= 1"
        )
    fft_size = 1 << (size - 1).bit_length() if round_to_power_of_two else size
    return size, shift, fft_size


def fbank_num_frames(
    num_samples: int, sample_rate: float = 16000, frame_length: float = 25.0, frame_shift: float = 10.0
) -> int:
    """Number of frames :func:`fbank` returns for ``num_samples`` samples (Kaldi ``snip_edges``; 0 if too short)."""
    size, shift, _ = _kaldi_frame_geometry(sample_rate, frame_length, frame_shift)
    return 0 if num_samples < size else (num_samples - size) // shift + 1


def _kaldi_window(window_type: str, size: int, dtype: torch.dtype, device=None) -> Tensor:
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False, dtype=dtype, device=device)
    if window_type == "hamming":
        return torch.hamming_window(size, periodic=False, alpha=0.54, beta=0.46, dtype=dtype, device=device)
    if window_type == "povey":
        return torch.hann_window(size, periodic=False, dtype=dtype, device=device).pow(0.85)
    if window_type == "rectangular":
        return torch.ones(size, dtype=dtype, device=device)
    if window_type == "blackman":
        phase = torch.arange(size, dtype=torch.float64, device=device) * (2 * math.pi / (size - 1))
        win = 0.42 - 0.5 * torch.cos(phase) + 0.08 * torch.cos(2 * phase)
        return win.to(dtype)
    raise ValueError(f"window_type must be one of {KALDI_WINDOW_TYPES}, got {window_type!r}")


def _hz_to_mel(freq: Tensor | float) -> Tensor | float:
    # HTK/Kaldi mel scale with the natural log: 1127 ln(1 + f / 700).
    if isinstance(freq, Tensor):
        return 1127.0 * torch.log1p(freq / 700.0)
    return 1127.0 * math.log1p(freq / 700.0)


@lru_cache(maxsize=16)
def _kaldi_mel_banks_cpu(
    num_mel_bins: int, fft_size: int, sample_rate: float, low_freq: float, high_freq: float
) -> Tensor:
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0.0 else high_freq + nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high <= nyquist and low_freq < high):
        raise ValueError(
            f"mel band edges must satisfy 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz); got "
            f"low_freq={low_freq}, high_freq={high_freq} (<= 0 means Nyquist + high_freq)"
        )
    mel_low, mel_high = _hz_to_mel(low_freq), _hz_to_mel(high)
    step = (mel_high - mel_low) / (num_mel_bins + 1)
    idx = torch.arange(num_mel_bins, dtype=torch.float64).unsqueeze(1)  # (M, 1)
    left = mel_low + idx * step
    centre = left + step
    right = left + 2 * step
    # Mel position of every FFT bin but the Nyquist bin, which Kaldi leaves at zero weight.
    bin_hz = torch.arange(fft_size // 2, dtype=torch.float64) * (sample_rate / fft_size)
    bin_mel = _hz_to_mel(bin_hz).unsqueeze(0)  # (1, K)
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)  # (M, K) triangles in the mel domain
    return F.pad(weights, (0, 1))  # (M, K + 1)


def kaldi_mel_centres(num_mel_bins: int = 128, sample_rate: float = 16000, low_freq: float = 20.0, high_freq: float = 0.0) -> Tensor:
    """Centre frequencies of :func:`kaldi_mel_banks`' triangles: ``(num_mel_bins,)`` float64, Hz.

    The centres are equally spaced on the mel scale ``1127 ln(1 + f/700)`` strictly between
    ``low_freq`` and ``high_freq`` (``<= 0`` means Nyquist plus ``high_freq``).
    """
    if not isinstance(num_mel_bins, int) or num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be a positive int, got {num_mel_bins!r}")
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0.0 else high_freq + nyquist
    if not (0.0 <= low_freq < high <= nyquist):
        raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist} Hz), got {low_freq}, {high_freq}")
    mel_low, mel_high = _hz_to_mel(low_freq), _hz_to_mel(high)
    step = (mel_high - mel_low) / (num_mel_bins + 1)
    centres_mel = mel_low + step * torch.arange(1, num_mel_bins + 1, dtype=torch.float64)
    return 700.0 * torch.expm1(centres_mel / 1127.0)


def kaldi_mel_banks(
    num_mel_bins: int = 128, fft_size: int = 512, sample_rate: float = 16000,
    low_freq: float = 20.0, high_freq: float = 0.0,
) -> Tensor:
    """Kaldi's triangular mel filters (no VTLN), ``(num_mel_bins, fft_size // 2 + 1)`` float64.

    Triangles are equally spaced on the mel scale ``1127 ln(1 + f/700)`` between ``low_freq``
    and ``high_freq`` Hz (``high_freq <= 0`` means Nyquist + high_freq); the weight of an FFT bin
    is the triangle evaluated at the bin's mel frequency. The Nyquist bin gets weight 0.
    """
    if not isinstance(num_mel_bins, int) or num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be a positive int, got {num_mel_bins!r}")
    return _kaldi_mel_banks_cpu(num_mel_bins, fft_size, float(sample_rate), float(low_freq), float(high_freq)).clone()


def _fbank_core(
    waveform: Tensor, window: Tensor, mel_banks: Tensor, window_shift: int, fft_size: int,
    preemphasis_coefficient: float, remove_dc_offset: bool, use_power: bool, use_log_fbank: bool,
) -> Tensor:
    size = window.shape[0]
    frames = waveform.unfold(-1, size, window_shift)  # (..., T, size), Kaldi snip_edges framing
    if remove_dc_offset:
        frames = frames - frames.mean(dim=-1, keepdim=True)
    if preemphasis_coefficient != 0.0:
        # x[n] - c * x[n-1] within each frame, with x[-1] := x[0].
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * window
    spectrum = torch.fft.rfft(frames, n=fft_size, dim=-1)  # (..., T, fft_size // 2 + 1) complex
    # |X|^2 as re^2 + im^2: about twice as fast as abs() (a hypot per bin) followed by a square.
    spectrum = spectrum.real.square() + spectrum.imag.square() if use_power else spectrum.abs()
    energies = torch.matmul(spectrum, mel_banks.t())  # (..., T, M)
    if use_log_fbank:
        energies = energies.clamp_min(_LOG_FLOOR).log()
    return energies


def fbank(
    waveform: Tensor,
    sample_rate: float = 16000,
    num_mel_bins: int = 128,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    *,
    window_type: str = "hanning",
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    use_power: bool = True,
    use_log_fbank: bool = True,
) -> Tensor:
    """Kaldi-compatible log-mel filterbank features of mono waveforms.

    Equal (to float rounding) to ``torchaudio.compliance.kaldi.fbank(w, sample_frequency=sample_rate,
    num_mel_bins=..., frame_length=..., frame_shift=..., htk_compat=True, use_energy=False,
    window_type='hanning', dither=0.0)`` with torchaudio's other defaults (``snip_edges=True``,
    ``low_freq=20``, ``preemphasis_coefficient=0.97``, ...), applied to each waveform of a batch.
    Unlike torchaudio, the default ``window_type`` here is ``'hanning'`` (the AST/CAV-MAE setting)
    and there is no dither, energy, VTLN or ``snip_edges=False`` option.

    Per frame: cut ``frame_length`` ms every ``frame_shift`` ms (frames that would run past the
    end are dropped), remove the DC offset, pre-emphasise, window, zero-pad to the next power of
    two, power spectrum, triangular mel filters (:func:`kaldi_mel_banks`), ``log(max(e, eps))``
    with ``eps`` the float32 machine epsilon.

    Args:
        waveform: ``(..., L)`` floating-point samples (scale as loaded, e.g. [-1, 1]).
        sample_rate: Hz.
        num_mel_bins: number of mel filters ``M``.
        frame_length: window length in milliseconds.
        frame_shift: frame step in milliseconds.

    Returns:
        ``(..., T, M)`` in the input's dtype, ``T = (L - window) // shift + 1`` with window and
        shift in samples (``int(sample_rate * ms / 1000)``).
    """
    waveform = _check_waveform(waveform)
    size, shift, fft_size = _kaldi_frame_geometry(sample_rate, frame_length, frame_shift, round_to_power_of_two)
    if waveform.shape[-1] < size:
        raise ValueError(
            f"waveform too short: {waveform.shape[-1]} samples, but one {frame_length} ms frame at "
            f"{sample_rate} Hz needs {size}"
        )
    window = _kaldi_window(window_type, size, waveform.dtype, waveform.device)
    banks = kaldi_mel_banks(num_mel_bins, fft_size, sample_rate, low_freq, high_freq)
    banks = banks.to(device=waveform.device, dtype=waveform.dtype)
    return _fbank_core(
        waveform, window, banks, shift, fft_size, preemphasis_coefficient, remove_dc_offset,
        use_power, use_log_fbank,
    )


# --------------------------------------------------------------------------------------------
# SpecAugment
# --------------------------------------------------------------------------------------------


def _rand(batch: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is None:  # (an explicit generator=None breaks symbolic batch sizes under torch.compile)
        return torch.rand(batch, device=like.device, dtype=torch.float32)
    return torch.rand(batch, device=like.device, dtype=torch.float32, generator=generator)


def _band_mask(
    batch: int, size: int, max_width: int, like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """(batch, size) bool: one contiguous band per example, width uniform in {0..min(max_width, size)}."""
    limit = min(max_width, size)
    width = (_rand(batch, like, generator) * (limit + 1)).floor().clamp_max(limit)  # (B,)
    start = (_rand(batch, like, generator) * (size - width + 1)).floor().clamp_max(size - width)  # (B,)
    pos = torch.arange(size, device=like.device, dtype=torch.float32)  # (size,)
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])


def _time_stretch(x: Tensor, factor: float, generator: torch.Generator | None) -> Tensor:
    """Resample the time axis of ``x`` (B, F, T) by a random speed per example, keeping T frames."""
    batch, _, frames = x.shape
    low = math.log(min(factor, 1.0 / factor))
    speed = torch.exp(low + (-2.0 * low) * _rand(batch, x, generator))  # (B,) log-uniform in [f, 1/f]
    src = torch.arange(frames, device=x.device, dtype=torch.float32)[None, :] * speed[:, None]  # (B, T)
    valid = src <= frames - 1
    left = src.floor().clamp_max(frames - 1)
    frac = (src - left).to(x.dtype)
    left_i = left.long()
    right_i = (left_i + 1).clamp_max(frames - 1)
    gather_l = torch.gather(x, 2, left_i[:, None, :].expand(-1, x.shape[1], -1))  # (B, F, T)
    gather_r = torch.gather(x, 2, right_i[:, None, :].expand(-1, x.shape[1], -1))
    out = gather_l + (gather_r - gather_l) * frac[:, None, :]
    return out * valid[:, None, :].to(x.dtype)


def spec_augment(
    features: Tensor,
    freq_mask: int = 80,
    time_mask: int = 80,
    stretch_factor: float = 0.8,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SpecAugment of a batch of (normalised) features, new randomness for every example.

    Applied in this order, each disabled by 0 (stretch also by 1.0):

    1. Time stretch: speed ``s`` drawn log-uniformly in ``[f, 1/f]`` (``f = stretch_factor``, or its
       inverse if > 1); output frame ``t`` is the linear interpolation of input frame ``t * s``.
       The frame count is **unchanged** (``T``): slowing down (``s < 1``) drops the tail,
       speeding up (``s > 1``) leaves the last frames at 0.
    2. One frequency mask: a band of ``w ~ U{0, ..., min(F', F)}`` consecutive bins,
       start uniform over the valid positions, set to 0.
    3. One time mask: the same on frames, ``w ~ U{0, ..., min(T', T)}``.

    Masked values are 0, i.e. the dataset mean when the features are normalised.

    Args:
        features: ``(B, F, T)``.
        freq_mask: maximum frequency-mask width ``F'`` in bins (0 disables).
        time_mask: maximum time-mask width ``T'`` in frames (0 disables).
        stretch_factor: time-stretch range ``f`` (0 or 1 disables).
        generator: optional ``torch.Generator`` (on the features' device) for reproducibility in
            eager mode; otherwise the global RNG is used (reproducible under ``torch.manual_seed``).

    Returns:
        ``(B, F, T)``, same dtype.
    """
    if features.dim() != 3:
        raise ValueError(f"spec_augment expects (batch, freq, frames), got shape {tuple(features.shape)}")
    _check_aug_params(freq_mask, time_mask, stretch_factor)
    return _spec_augment(features, freq_mask, time_mask, stretch_factor not in (0, 1), float(stretch_factor), generator)


def _spec_augment(
    x: Tensor, freq_mask: int, time_mask: int, stretch: bool, stretch_factor: float,
    generator: torch.Generator | None,
) -> Tensor:
    # Parameters already validated (no Python checks on them here: keeps torch.compile graphs clean).
    batch, bins, frames = x.shape
    if stretch:
        x = _time_stretch(x, stretch_factor, generator)
    if freq_mask > 0:
        fmask = _band_mask(batch, bins, freq_mask, x, generator)  # (B, F)
        x = x.masked_fill(fmask[:, :, None], 0.0)
    if time_mask > 0:
        tmask = _band_mask(batch, frames, time_mask, x, generator)  # (B, T)
        x = x.masked_fill(tmask[:, None, :], 0.0)
    return x


def _check_aug_params(freq_mask: int, time_mask: int, stretch_factor: float) -> None:
    for name, value in (("spec_aug_freq_mask", freq_mask), ("spec_aug_time_mask", time_mask)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0 (maximum mask width; 0 disables), got {value!r}")
    if isinstance(stretch_factor, bool) or not isinstance(stretch_factor, (int, float)) or not (
        stretch_factor >= 0 and math.isfinite(stretch_factor)
    ):
        raise ValueError(
            f"spec_aug_stretch_factor must be a finite number >= 0 (0 or 1 disables), got {stretch_factor!r}"
        )


# --------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------


class AudioFrontend(nn.Module):
    """Waveform -> ``(batch, num_freq_bins, frames)`` float32 features for the audio patch embedding.

    ``kind="spectrogram"`` is the seed's power spectrogram (:func:`spectrogram` with ``n_fft``,
    ``win_length``, ``hop_length``, ``power``, ``pad``, ``center``, ``pad_mode``);
    ``kind="fbank"`` is the Kaldi log-mel filterbank (:func:`fbank` with ``num_mel_bins``,
    ``frame_length``/``frame_shift`` in ms), transposed so mel is the height.

    If ``mean`` and ``std`` are given the features become ``(x - mean) / std`` (scalars, e.g.
    from :func:`compute_audio_stats`). In training mode :func:`spec_augment` follows with
    ``spec_aug_freq_mask``, ``spec_aug_time_mask`` and ``spec_aug_stretch_factor``; eval mode
    never augments. The output is not cropped to the patch size (the model does that).
    Computation is in float32 with autocast disabled; the (non-persistent) window and mel
    buffers stay float32 even if the module is cast with ``.half()``/``.to(torch.bfloat16)``.
    """

    def __init__(
        self,
        kind: str = "fbank",
        *,
        sample_rate: int = 16000,
        n_fft: int = 128,
        win_length: int | None = 24,
        hop_length: int | None = None,
        power: float = 2.0,
        pad: int = 0,
        center: bool = True,
        pad_mode: str = "reflect",
        num_mel_bins: int = 128,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        mean: float | None = None,
        std: float | None = None,
        spec_aug_freq_mask: int = 80,
        spec_aug_time_mask: int = 80,
        spec_aug_stretch_factor: float = 0.8,
    ) -> None:
        super().__init__()
        if kind not in FRONTEND_KINDS:
            raise ValueError(f"kind must be one of {FRONTEND_KINDS}, got {kind!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std for normalisation, or neither; got mean={mean}, std={std}")
        if std is not None and not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std must be a finite number > 0, got {std}")
        if mean is not None and not math.isfinite(mean):
            raise ValueError(f"mean must be finite, got {mean}")
        _check_aug_params(spec_aug_freq_mask, spec_aug_time_mask, spec_aug_stretch_factor)
        self.kind = kind
        self.sample_rate = sample_rate
        self.mean = None if mean is None else float(mean)
        self.std = None if std is None else float(std)
        self.spec_aug_freq_mask = spec_aug_freq_mask
        self.spec_aug_time_mask = spec_aug_time_mask
        self.spec_aug_stretch_factor = float(spec_aug_stretch_factor)
        self._stretch = spec_aug_stretch_factor not in (0, 1)

        if kind == "spectrogram":
            win, hop = _resolve_stft_lengths(n_fft, win_length, hop_length)
            if power is None or power <= 0:
                raise ValueError(f"power must be > 0 for the spectrogram front-end, got {power}")
            if pad < 0:
                raise ValueError(f"pad must be >= 0 samples, got {pad}")
            self.n_fft, self.win_length, self.hop_length = n_fft, win, hop
            self.power, self.pad, self.center, self.pad_mode = float(power), pad, center, pad_mode
            self.num_freq_bins = n_fft // 2 + 1
            self.register_buffer("window", self._build_window(), persistent=False)
        else:
            size, shift, fft_size = _kaldi_frame_geometry(sample_rate, frame_length, frame_shift)
            self.num_mel_bins, self.frame_length, self.frame_shift = num_mel_bins, frame_length, frame_shift
            self._win_size, self._win_shift, self._fft_size = size, shift, fft_size
            self.num_freq_bins = num_mel_bins
            self.register_buffer("window", self._build_window(), persistent=False)  # (size,)
            self.register_buffer("mel_banks", self._build_mel_banks(), persistent=False)  # (M, fft/2+1)

    def _apply(self, fn, recurse=True):
        # Keep the analysis buffers exact float32 through model.half() / .to(torch.bfloat16).
        super()._apply(fn, recurse)
        for name in ("window", "mel_banks"):
            buf = getattr(self, name, None)
            if buf is not None and buf.dtype != torch.float32:
                master = self._build_window() if name == "window" else self._build_mel_banks()
                setattr(self, name, master.to(device=buf.device))
        return self

    def _build_window(self) -> Tensor:
        if self.kind == "spectrogram":
            return torch.hann_window(self.win_length, periodic=True)
        return _kaldi_window(_KALDI_WINDOW, self._win_size, torch.float32)

    def _build_mel_banks(self) -> Tensor:
        return kaldi_mel_banks(self.num_mel_bins, self._fft_size, self.sample_rate, _KALDI_LOW_FREQ_HZ).float()

    def extra_repr(self) -> str:
        if self.kind == "spectrogram":
            geo = f"n_fft={self.n_fft}, win_length={self.win_length}, hop_length={self.hop_length}, power={self.power}"
        else:
            geo = f"num_mel_bins={self.num_mel_bins}, frame_length={self.frame_length}ms, frame_shift={self.frame_shift}ms"
        return (
            f"kind={self.kind!r}, sample_rate={self.sample_rate}, {geo}, mean={self.mean}, std={self.std}, "
            f"spec_aug=(freq={self.spec_aug_freq_mask}, time={self.spec_aug_time_mask}, "
            f"stretch={self.spec_aug_stretch_factor})"
        )

    def analysis_key(self) -> tuple:
        """What identifies the raw features :meth:`features` computes: the kind and the
        analysis geometry (rate in Hz, window and hop, bands). Normalisation and SpecAugment,
        applied later by :meth:`postprocess`, are not part of it, so two front-ends with equal
        keys give the same features and a cache of them can be shared."""
        if self.kind == "fbank":
            return ("fbank", self.sample_rate, self.num_mel_bins, self.frame_length, self.frame_shift)
        return ("spectrogram", self.sample_rate, self.n_fft, self.win_length, self.hop_length, self.power,
                self.pad, self.center, self.pad_mode)

    def num_frames(self, num_samples: int) -> int:
        """Output width (frames) for a waveform of ``num_samples`` samples; <= 0 means too short."""
        if self.kind == "spectrogram":
            return spectrogram_num_frames(
                num_samples, self.n_fft, self.win_length, self.hop_length, self.pad, self.center
            )
        return 0 if num_samples < self._win_size else (num_samples - self._win_size) // self._win_shift + 1

    def min_num_samples(self, num_frames: int = 1) -> int:
        """Fewest samples for which the output has at least ``num_frames`` frames (>= 1)."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if self.kind == "fbank":
            return self._win_size + (num_frames - 1) * self._win_shift
        hop = self.hop_length
        if self.center:
            need = max((num_frames - 1) * hop, 0) - 2 * self.pad
            if self.pad_mode == "reflect":  # reflect padding needs more than n_fft // 2 samples
                need = max(need, self.n_fft // 2 + 1 - 2 * self.pad)
            return max(need, 1)
        return max(self.n_fft + (num_frames - 1) * hop - 2 * self.pad, 1)

    def _check_input(self, waveform: object) -> Tensor:
        waveform = _check_waveform(waveform)
        if waveform.dim() != 2:
            hint = ""
            if waveform.dim() == 3:
                hint = (
                    f" It looks like (batch, channels, samples) = {tuple(waveform.shape)}: mix to mono "
                    "first, e.g. waveform.mean(dim=1)."
                )
            elif waveform.dim() == 1:
                hint = " For a single clip use waveform.unsqueeze(0)."
            raise ValueError(
                f"audio must be mono waveforms of shape (batch, samples), got shape {tuple(waveform.shape)}.{hint}"
            )
        num_samples = waveform.shape[-1]
        if self.num_frames(num_samples) < 1 or num_samples < self.min_num_samples(1):
            raise ValueError(
                f"audio too short: {num_samples} samples give no {self.kind} frame; need at least "
                f"{self.min_num_samples(1)} samples"
            )
        _check_finite(waveform, "audio waveform")
        return waveform

    def features(self, waveform: Tensor) -> Tensor:
        """Raw features (no normalisation, no augmentation): ``(B, L)`` -> ``(B, F, T)`` float32."""
        waveform = self._check_input(waveform)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            x = waveform.float()
            if self.kind == "spectrogram":
                return spectrogram(
                    x, self.n_fft, self.win_length, self.hop_length, self.power, self.pad,
                    self.center, self.pad_mode, window=self.window.float(),
                )  # (B, F, T)
            feats = _fbank_core(
                x, self.window.float(), self.mel_banks.float(), self._win_shift, self._fft_size,
                _KALDI_PREEMPHASIS, True, True, True,
            )  # (B, T, M)
            return feats.transpose(1, 2)  # (B, M, T)

    def forward(self, waveform: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """``(B, L)`` float mono samples -> ``(B, num_freq_bins, num_frames(L))`` float32.

        ``generator`` optionally drives SpecAugment's randomness (training mode only; eager
        mode only -- under ``torch.compile`` use the global RNG, ``torch.manual_seed``).
        Raises ValueError for a channel dimension, audio shorter than :meth:`min_num_samples`
        or NaN/Inf samples (the last check is skipped while tracing for torch.compile/export).
        Equal to ``postprocess(features(waveform))``.
        """
        return self._postprocess(self.features(waveform), generator)

    def postprocess(self, features: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Normalise (and, in training mode, SpecAugment) raw features computed earlier.

        For features cached once per clip (e.g. by :class:`zorro.train.CachedClips`) and
        augmented in the feature domain (:meth:`zorro.augment.ClipAugment.fbank`): the model
        then skips the front-end's analysis but applies the same normalisation and masking.

        Args:
            features: ``(B, num_freq_bins, T)`` raw features as :meth:`features` returns them.
            generator: as in :meth:`forward`.

        Returns:
            ``(B, num_freq_bins, T)`` float32.
        """
        if not isinstance(features, Tensor) or not features.is_floating_point():
            raise TypeError(f"features must be a floating-point tensor, got {type(features).__name__}")
        if features.dim() != 3 or features.shape[1] != self.num_freq_bins:
            raise ValueError(
                f"features must have shape (batch, {self.num_freq_bins}, frames) for this {self.kind} front-end, "
                f"got {tuple(features.shape)}"
            )
        return self._postprocess(features.float(), generator)

    def mel_centres_hz(self) -> Tensor:
        """Centre frequencies of the mel filters (``kind="fbank"`` only): ``(num_mel_bins,)``
        float64, in Hz, increasing."""
        if self.kind != "fbank":
            raise ValueError(f"mel_centres_hz needs the fbank front-end, this one is {self.kind!r}")
        return kaldi_mel_centres(self.num_mel_bins, self.sample_rate, _KALDI_LOW_FREQ_HZ)

    def _postprocess(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.mean is not None:
                x = (x - self.mean) / self.std
            if self.training:
                x = _spec_augment(
                    x, self.spec_aug_freq_mask, self.spec_aug_time_mask, self._stretch,
                    self.spec_aug_stretch_factor, generator,
                )
        return x


# --------------------------------------------------------------------------------------------
# dataset statistics
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def compute_audio_stats(waveforms: Iterable, frontend: AudioFrontend) -> tuple[float, float]:
    """Mean and standard deviation of ``frontend``'s raw features over a dataset.

    Args:
        waveforms: iterable of mono waveforms, each ``(L,)`` or ``(B, L)`` (tensor or array-like,
            float samples); clips may differ in length.
        frontend: the :class:`AudioFrontend` whose raw features (before normalisation and
            augmentation, :meth:`AudioFrontend.features`) are measured.

    Returns:
        ``(mean, std)`` as Python floats over every time-frequency value of every clip, suitable
        for ``AudioFrontend(mean=..., std=...)``. Accumulated in float64.
    """
    if not isinstance(frontend, AudioFrontend):
        raise TypeError(f"frontend must be an AudioFrontend, got {type(frontend).__name__}")
    device = frontend.window.device

    def features() -> Iterable[Tensor]:
        for i, clip in enumerate(waveforms):
            x = clip if isinstance(clip, Tensor) else torch.as_tensor(clip)
            if not x.is_floating_point():
                raise TypeError(f"clip {i}: expected float samples, got dtype {x.dtype}")
            yield frontend.features((x.unsqueeze(0) if x.dim() == 1 else x).to(device))  # (B, F, T)

    return feature_stats(features())


@torch.no_grad()
def feature_stats(features: Iterable[Tensor]) -> tuple[float, float]:
    """Mean and standard deviation over every value of raw features computed earlier.

    Args:
        features: iterable of float tensors of any shape, e.g. ``(F, T)`` per clip or
            ``(B, F, T)`` per batch (:meth:`AudioFrontend.features` outputs, such as the
            ``audio_features`` a training cache keeps).

    Returns:
        ``(mean, std)`` as Python floats (std unbiased), accumulated in float64; what
        :func:`compute_audio_stats` returns for the waveforms those features came from.
    """
    total = 0
    ref = 0.0  # shift: the first tensor's mean; sums of deviations keep the variance well conditioned
    acc_sum = 0.0
    acc_sq = 0.0
    for i, x in enumerate(features):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"features {i}: expected a floating-point tensor, got {type(x).__name__}")
        feats = x.double()
        if total == 0:
            ref = float(feats.mean())
        dev = feats - ref
        acc_sum += float(dev.sum())
        acc_sq += float(dev.pow(2).sum())
        total += feats.numel()
    if total < 2:
        raise ValueError("audio statistics need at least one clip with 2 or more feature values")
    mean_dev = acc_sum / total
    var = (acc_sq - total * mean_dev**2) / (total - 1)  # unbiased
    mean = ref + mean_dev
    std = math.sqrt(max(var, 0.0))
    logger.info("audio stats over %d values: mean=%.6f std=%.6f", total, mean, std)
    return mean, std
