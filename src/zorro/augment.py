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

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from zorro.audio import _LOG_FLOOR, _hz_to_mel

__all__ = [
    "ClipAugment", "random_translate", "random_zoom", "random_affine_intensity", "random_illumination", "random_time_reverse",
    "random_time_shift", "random_speed", "random_fbank_perturb", "fbank_noise_floor", "fbank_noise_dof",
]


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


def _factor_range(rng: tuple[float, float], name: str) -> tuple[float, float]:
    """``(low, high)`` of a multiplicative factor; ``ValueError`` unless ``0 < low <= high``."""
    lo, hi = rng
    if not 0 < lo <= hi:
        raise ValueError(f"need 0 < {name} low <= high, got {rng}")
    return lo, hi


def random_zoom(video: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    """Zoom every clip about its centre by its own random factor, the same for all its frames.

    Args:
        video: ``(b, c, t, h, w)`` float frames.
        scale: range ``(low, high)`` of the zoom factor (> 0); above 1 enlarges the content,
            below 1 shrinks it (the border pixels fill the uncovered margin). Bilinear.

    Returns:
        ``(b, c, t, h, w)``, same dtype.
    """
    _check_float(video, 5, "video")
    lo, hi = _factor_range(scale, "scale")
    if lo == hi == 1.0:
        return video
    b, c, t, h, w = video.shape
    factor = torch.empty(b, dtype=video.dtype).uniform_(lo, hi)
    theta = torch.zeros(b, 2, 3, dtype=video.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / factor  # output pixel -> input coordinate
    grid = torch.nn.functional.affine_grid(theta, [b, c * t, h, w], align_corners=False)
    out = torch.nn.functional.grid_sample(video.reshape(b, c * t, h, w), grid, mode="bilinear", padding_mode="border", align_corners=False)
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
    return torch.addcmul(0.5 * (1 - a) + o, video, a)  # (x - 0.5) a + 0.5 + o in one pass


def random_illumination(video: torch.Tensor, amplitude: float, grid: int = 4) -> torch.Tensor:
    """Add a random smooth brightness field to every clip, the same for all its frames and channels.

    The field is a ``grid x grid`` array of standard normal values, bilinearly upsampled to the
    frame and scaled by a per-clip factor uniform in ``[0, amplitude]``: it changes shading and
    background texture, which otherwise identify a clip in two-view learning.

    Args:
        video: ``(b, c, t, h, w)`` float frames in [0, 1].
        amplitude: largest scale of the field (>= 0; 0 = off).
        grid: coarse resolution of the field (>= 1).

    Returns:
        ``(b, c, t, h, w)`` (not clipped).
    """
    _check_float(video, 5, "video")
    if not amplitude >= 0 or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"need amplitude >= 0 and an int grid >= 1, got {amplitude}, {grid}")
    if amplitude == 0:
        return video
    b, c, t, h, w = video.shape
    coarse = torch.randn(b, 1, grid, grid, dtype=video.dtype)
    field = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)  # (b, 1, h, w)
    scale = torch.empty(b, 1, 1, 1, dtype=video.dtype).uniform_(0.0, amplitude)
    return video + (field * scale)[:, :, None]  # broadcast over channels and frames


def random_time_reverse(video: torch.Tensor, p: float) -> torch.Tensor:
    """Play each clip backwards with probability ``p``.

    Args:
        video: ``(b, c, t, h, w)`` float frames.
        p: probability in [0, 1].

    Returns:
        ``(b, c, t, h, w)``.
    """
    _check_float(video, 5, "video")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if p == 0:
        return video
    flip = torch.rand(video.shape[0]) < p
    return torch.where(flip[:, None, None, None, None], video.flip(2), video)


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
    shifts = _draw_shifts(b, n, max_fraction)
    if shifts is None:
        return audio
    return torch.gather(audio, 1, (torch.arange(n)[None, :] - shifts) % n)


def _draw_shifts(b: int, n: int, max_fraction: float) -> torch.Tensor | None:
    """``(b, 1)`` int64 shifts in samples, uniform in ``[-m, m]`` with ``m = int(max_fraction * n)``;
    None (and no random draw) when ``m == 0``. Shared by :func:`random_time_shift` and the
    fused speed + shift path of :meth:`ClipAugment.audio`, so both draw the same shifts."""
    m = int(max_fraction * n)
    return torch.randint(-m, m + 1, (b, 1)) if m > 0 else None


def random_speed(audio: torch.Tensor, factor: tuple[float, float]) -> torch.Tensor:
    """Play every waveform faster or slower by its own random factor (tempo and pitch change
    together, like a tape run at another speed), keeping the length.

    The content is resampled about the centre of the clip by linear interpolation; a sped-up
    clip is zero-padded at both ends, a slowed-down one loses its ends.

    Args:
        audio: ``(b, samples)`` float waveforms.
        factor: range ``(low, high)`` of the speed factor (> 0; 1.25 plays 25 % faster).

    Returns:
        ``(b, samples)``.
    """
    _check_float(audio, 2, "audio")
    lo, hi = _factor_range(factor, "factor")
    if lo == hi == 1.0:
        return audio
    b, n = audio.shape
    r = torch.empty(b, 1, dtype=torch.float64).uniform_(lo, hi)
    return _sample_linear(audio, _speed_positions(torch.arange(n)[None, :], r, n))


def _speed_positions(index: torch.Tensor, rate: torch.Tensor, n: int) -> torch.Tensor:
    """Source positions ``(b, m)`` (float32, in samples) of output samples ``index`` (``(1, m)``
    or ``(b, m)``) when a clip of ``n`` samples is played ``rate (b, 1)`` times faster about
    its centre: ``(index - c) * rate + c`` with ``c = (n - 1) / 2``."""
    centre = (n - 1) / 2.0
    rate = rate.to(torch.float32)
    # float32 keeps positions within ~1e-3 sample of float64 ones for clips up to ~1e5 samples.
    return torch.addcmul(centre * (1.0 - rate), index.to(torch.float32), rate)


def _sample_linear(audio: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``audio (b, n)`` read at fractional positions ``pos (b, m)`` by linear interpolation,
    0 where a position falls outside ``[0, n - 1]``. One ``grid_sample`` call, about twice
    as fast as two gathers and a blend."""
    b, n = audio.shape
    if n == 1:
        return audio.expand(b, pos.shape[1]) * (pos == 0).to(audio.dtype)
    x = pos.to(audio.dtype) * (2.0 / (n - 1)) - 1.0  # align_corners=True: -1 and 1 are the first and last samples
    grid = audio.new_zeros(b, 1, pos.shape[1], 2)
    # Outside positions are moved far out, where zero padding reads exactly 0 (no blend with
    # the edge sample).
    grid[:, 0, :, 0] = torch.where(x.abs() <= 1.0, x, 4.0)
    return torch.nn.functional.grid_sample(audio[:, None, None, :], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0, 0]


def fbank_noise_floor(frontend: Any, noise_std: float, *, num_clips: int = 32, seed: int = 0) -> torch.Tensor:
    """Mean mel-band power that white noise of ``noise_std`` adds to ``frontend``'s fbank.

    Measured by running the front-end on ``num_clips`` one-second clips of Gaussian noise
    drawn from a private generator (``seed``), so calling this never moves the global RNG.

    Args:
        frontend: an :class:`~zorro.audio.AudioFrontend` of kind ``"fbank"``.
        noise_std: noise standard deviation in waveform units (>= 0).

    Returns:
        ``(num_mel_bins,)`` float32 power (not log) per mel band; zeros when ``noise_std`` is 0.
    """
    if getattr(frontend, "kind", None) != "fbank":
        raise ValueError("fbank_noise_floor needs an AudioFrontend of kind 'fbank'")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    device = frontend.window.device
    if noise_std == 0:
        return torch.zeros(frontend.num_freq_bins, device=device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = noise_std * torch.randn(num_clips, int(frontend.sample_rate), generator=gen)
    with torch.no_grad():
        return frontend.features(noise.to(device)).exp().mean(dim=(0, 2))  # (M,)


def random_fbank_perturb(
    features: torch.Tensor,
    mel_centres_hz: torch.Tensor,
    *,
    speed: tuple[float, float] = (1.0, 1.0),
    time_shift: float = 0.0,
    gain: tuple[float, float] = (1.0, 1.0),
    noise_floor: torch.Tensor | None = None,
    noise_dof: torch.Tensor | None = None,
    tilt: float = 0.0,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Speed, time shift, gain and a noise floor applied to log-mel filterbank features.

    The feature-domain counterpart of :meth:`ClipAugment.audio` + the fbank front-end, for
    features computed once per clip (about 5x less work per view than re-analysing an
    augmented waveform). Per clip, in the order of the random draws:

    1. Speed ``r`` uniform in ``speed``: frame ``t`` reads source frame ``(t' - c) * r + c``
       (``c`` the centre frame, ``t'`` below) and mel band ``m`` reads the band whose centre
       is ``f_m / r`` -- a tape played ``r`` times faster, in time and pitch. Bilinear, in the
       power domain; what falls outside the source is silence.
    2. A circular time shift of ``k`` whole frames, ``k`` uniform in
       ``[-int(time_shift * T), int(time_shift * T)]``: ``t' = (t - k) mod T``.
    3. Gain ``g`` uniform in ``gain``: power times ``g ** 2`` (a constant added to the log).
    4. A spectral tilt (``tilt > 0``): log power plus ``a * (m / (M - 1) - 0.5)`` for band
       ``m``, ``a`` uniform in ``[-tilt, tilt]`` -- a random treble/bass balance.
    5. ``noise_floor`` (``(M,)`` power per band, :func:`fbank_noise_floor`) is added. Without
       ``noise_dof`` it is the mean effect of white noise; with ``noise_dof`` (``(M,)``, the
       Gamma shape ``k`` of each band's noise power, :func:`fbank_noise_dof`) every value is
       drawn around it, like the noise's own frame-to-frame fluctuation (log-normal with the
       log-domain mean and variance of a Gamma of shape ``k`` and mean 1, times the floor).

    With ``speed == (1, 1)``, ``time_shift == 0``, ``gain == (1, 1)`` and no noise floor the
    features come back unchanged (up to float rounding of ``log(exp(x))``).

    Args:
        features: ``(b, M, T)`` raw log-mel energies (:meth:`AudioFrontend.features`, kind fbank).
        mel_centres_hz: ``(M,)`` centre frequency of each band in Hz, increasing
            (:meth:`AudioFrontend.mel_centres_hz`).
        speed: range ``(low, high)`` of the speed factor (> 0).
        time_shift: bound of the shift as a fraction of the ``T`` frames, in [0, 1).
        gain: range ``(low, high)`` of the amplitude gain (> 0).
        noise_floor: ``(M,)`` power added to every frame, or None.
        noise_dof: ``(M,)`` Gamma shapes (> 0) to draw the noise power with, or None for its mean.
        tilt: bound of the spectral tilt, in log power across the bands (>= 0; 0 = off).
        interpolation: ``"bilinear"`` or ``"bicubic"`` resampling of the speed change
            (bicubic overshoots below zero power, clamped to silence; on AV-digits it cost
            retrieval, see ``docs/training.md``).

    Returns:
        ``(b, M, T)`` log-mel energies, floored at float32 epsilon like the front-end.
    """
    _check_float(features, 3, "features")
    b, m, t = features.shape
    if not isinstance(mel_centres_hz, torch.Tensor) or mel_centres_hz.shape != (m,):
        raise ValueError(f"mel_centres_hz must be a ({m},) tensor matching features' {m} bands, got {getattr(mel_centres_hz, 'shape', mel_centres_hz)}")
    s_lo, s_hi = _factor_range(tuple(speed), "speed")
    g_lo, g_hi = _factor_range(tuple(gain), "gain")
    if not 0.0 <= time_shift < 1.0:
        raise ValueError(f"time_shift must be in [0, 1), got {time_shift}")
    for name, value in (("noise_floor", noise_floor), ("noise_dof", noise_dof)):
        if value is not None and (not isinstance(value, torch.Tensor) or value.shape != (m,)):
            raise ValueError(f"{name} must be a ({m},) tensor, got {getattr(value, 'shape', value)}")
    if noise_dof is not None and (noise_floor is None or not bool((noise_dof > 0).all())):
        raise ValueError("noise_dof needs a noise_floor and must be > 0 in every band")
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    if isinstance(tilt, bool) or not isinstance(tilt, (int, float)) or not tilt >= 0:
        raise ValueError(f"tilt must be a number >= 0, got {tilt!r}")
    device = features.device
    power = features.float().exp()  # (b, M, T)
    if not (s_lo == s_hi == 1.0 and int(time_shift * t) == 0):
        rate = torch.empty(b, 1, dtype=torch.float64).uniform_(s_lo, s_hi)
        shifts = _draw_shifts(b, t, time_shift)
        frames = torch.arange(t, dtype=torch.float64)[None, :]
        if shifts is not None:
            frames = torch.remainder(frames - shifts, t)
        centre = (t - 1) / 2.0
        src_t = (frames - centre) * rate + centre  # (b, T) source frame
        centres = mel_centres_hz.to(torch.float64).cpu()
        mel = _hz_to_mel(centres)
        src_mel = _hz_to_mel(centres[None, :] / rate)  # (b, M)
        if m > 1:  # fractional band index: piecewise linear in mel between the centres
            hi = torch.searchsorted(mel, src_mel).clamp(1, m - 1)
            lo_mel, hi_mel = mel[hi - 1], mel[hi]
            src_m = (hi - 1).to(torch.float64) + (src_mel - lo_mel) / (hi_mel - lo_mel)
        else:
            src_m = torch.zeros_like(src_mel)
        # grid_sample coordinates (align_corners=True); out-of-range positions are moved far
        # out, where zero padding reads exactly 0 (silence).
        gx = torch.where((src_t >= 0) & (src_t <= t - 1), src_t * (2.0 / max(t - 1, 1)) - 1.0, 4.0)
        gy = torch.where((src_m >= 0) & (src_m <= m - 1), src_m * (2.0 / max(m - 1, 1)) - 1.0, 4.0)
        grid = torch.empty(b, m, t, 2, dtype=power.dtype, device=device)  # separable: x from time, y from band
        grid[..., 0] = gx.to(device=device, dtype=power.dtype)[:, None, :]
        grid[..., 1] = gy.to(device=device, dtype=power.dtype)[:, :, None]
        power = torch.nn.functional.grid_sample(power[:, None], grid, mode=interpolation, padding_mode="zeros", align_corners=True)[:, 0]
        if interpolation == "bicubic":
            power = power.clamp_min(0.0)  # cubic overshoot below zero power
    scale = torch.empty(b, 1, 1, dtype=torch.float32).uniform_(g_lo, g_hi).square()  # (b, 1, 1) power gain
    if tilt > 0:
        slope = torch.empty(b, 1, 1, dtype=torch.float32).uniform_(-tilt, tilt)
        bands = torch.linspace(-0.5, 0.5, m, dtype=torch.float32)[None, :, None] if m > 1 else torch.zeros(1, 1, 1)
        scale = scale * torch.exp(slope * bands)  # (b, M, 1)
    scale = scale.to(device)
    noise = None
    if noise_floor is not None:
        floor = noise_floor.to(device=device, dtype=power.dtype)[None, :, None]  # (1, M, 1)
        if noise_dof is None:
            noise = floor
        else:
            # Log-normal with the log-domain mean and variance of Gamma(k, 1/k) (digamma(k) -
            # ln k and trigamma(k)): one randn per value, where Gamma sampling took 32 ms for
            # 64 x 64 x 98 values on 2 cores.
            k = noise_dof.to(device=device, dtype=torch.float64)
            mu = (torch.special.digamma(k) - k.log()).to(power.dtype)[None, :, None]  # (1, M, 1)
            sigma = torch.special.polygamma(1, k).sqrt().to(power.dtype)[None, :, None]
            noise = floor * torch.exp(torch.randn(b, m, t, dtype=power.dtype, device=device) * sigma + mu)
    power = power * scale
    if noise is not None:
        power = power + noise
    return power.clamp_min(_LOG_FLOOR).log().to(features.dtype)


def fbank_noise_dof(frontend: Any) -> torch.Tensor:
    """Gamma shape of the white-noise power in each mel band of ``frontend``'s fbank.

    A band's power is a weighted sum of its FFT bins' powers, each exponentially distributed
    for Gaussian noise; matching mean and variance gives shape ``(sum w)^2 / sum w^2``,
    divided by the analysis window's equivalent noise bandwidth in bins (1.5 for Hann:
    neighbouring bins are correlated). Measured on one-second noise clips at 64 bands, the
    log power's spread per band is then within ~0.1 of the real one (about 1.0 in the
    narrowest low bands, 0.4 in the widest).

    Returns:
        ``(num_mel_bins,)`` float32, >= 1.
    """
    if getattr(frontend, "kind", None) != "fbank":
        raise ValueError("fbank_noise_dof needs an AudioFrontend of kind 'fbank'")
    w = frontend.mel_banks.double()  # (M, K)
    win = frontend.window.double()
    enbw = len(win) * win.square().sum() / win.sum().square()  # in bins of the window length
    return (w.sum(1).square() / w.square().sum(1).clamp_min(1e-30) / enbw).clamp_min(1.0).float()


AUDIO_DOMAINS = ("waveform", "fbank")


@dataclass
class ClipAugment:
    """The two-view augmentation of a batch of clips.

    Video: optional time reversal (``reverse``), a random zoom (``zoom``), a random translation
    of up to ``max_shift_fraction`` of the frame side, contrast/brightness jitter, then an
    optional smooth brightness field (``illumination``) and pixel noise (``video_noise``). Audio: a random speed change
    (``speed``), a circular time shift of up to ``time_shift`` of the clip, a random gain,
    and white noise (SpecAugment, when the model has it, adds masking inside the model).

    Attributes:
        max_shift_fraction: translation bound as a fraction of the frame height.
        zoom: range of the zoom factor (``(1, 1)`` = off).
        contrast: range of the contrast factor.
        brightness: bound of the brightness offset (frames in [0, 1]).
        illumination: largest amplitude of a random smooth brightness field (0 = off).
        video_noise: largest std of per-pixel white noise added to the frames (0 = off).
        reverse: probability of playing a clip backwards.
        speed: range of the audio speed factor (``(1, 1)`` = off).
        time_shift: bound of the audio shift as a fraction of the clip.
        gain: range of the audio gain.
        noise_std: std of the added white noise (waveform units).
        noise_draws: in the fbank domain, draw the noise power of every value around its
            mean (True) or add the mean noise floor (False, the default: the same retrieval
            on AV-digits, see ``docs/training.md``).
        spectral_tilt: in the fbank domain, bound of a random tilt of the log power across
            the mel bands (0 = off; see :func:`random_fbank_perturb`).
        audio_domain: where a training objective applies the audio augmentation:
            ``"waveform"`` (:meth:`audio`, then the model's front-end on every view) or
            ``"fbank"`` (front-end features once per clip, then :meth:`fbank` per view;
            fbank front-end only).
    """

    max_shift_fraction: float = 0.125
    zoom: tuple[float, float] = (1.0, 1.0)
    contrast: tuple[float, float] = (0.6, 1.4)
    brightness: float = 0.2
    illumination: float = 0.0
    video_noise: float = 0.0
    reverse: float = 0.0
    speed: tuple[float, float] = (1.0, 1.0)
    time_shift: float = 0.25
    gain: tuple[float, float] = (0.5, 1.5)
    noise_std: float = 0.005
    audio_domain: str = "waveform"
    noise_draws: bool = False
    spectral_tilt: float = 0.0
    _noise_floors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.audio_domain not in AUDIO_DOMAINS:
            raise ValueError(f"ClipAugment.audio_domain must be one of {AUDIO_DOMAINS}, got {self.audio_domain!r}")
        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"ClipAugment.{name} must be a finite number, got {value!r}")
            return float(value)

        for name, low_min in (("zoom", 0.0), ("speed", 0.0), ("gain", 0.0), ("contrast", None)):
            rng = getattr(self, name)
            if not isinstance(rng, (tuple, list)) or len(rng) != 2:
                raise TypeError(f"ClipAugment.{name} must be a (low, high) pair, got {rng!r}")
            lo, hi = number(name, rng[0]), number(name, rng[1])
            if not (lo <= hi and (lo > low_min if low_min is not None else lo >= 0)):
                bound = "0 < low" if low_min is not None else "0 <= low"
                raise ValueError(f"ClipAugment.{name} needs {bound} <= high, got {rng!r}")
            setattr(self, name, (lo, hi))
        if self.audio_domain == "waveform" and isinstance(self.spectral_tilt, (int, float)) and self.spectral_tilt > 0:
            raise ValueError("ClipAugment.spectral_tilt acts on fbank features only: set audio_domain='fbank' or spectral_tilt=0")
        if not isinstance(self.noise_draws, bool):
            raise TypeError(f"ClipAugment.noise_draws must be True or False, got {self.noise_draws!r}")
        for name, upper in (("max_shift_fraction", 1.0), ("brightness", None), ("illumination", None), ("video_noise", None),
                            ("reverse", 1.0), ("noise_std", None), ("spectral_tilt", None)):
            value = number(name, getattr(self, name))
            if value < 0 or (upper is not None and value > upper):
                limit = f"in [0, {upper:g}]" if upper is not None else ">= 0"
                raise ValueError(f"ClipAugment.{name} must be {limit}, got {value!r}")
        # A whole-clip rotation is the identity again, so random_time_shift takes [0, 1).
        shift = number("time_shift", self.time_shift)
        if not 0.0 <= shift < 1.0:
            raise ValueError(f"ClipAugment.time_shift must be in [0, 1), got {shift!r}")

    def video(self, video: torch.Tensor) -> torch.Tensor:
        """``(b, c, t, h, w) -> (b, c, t, h, w)``, one random draw per clip."""
        _check_float(video, 5, "video")
        shift = int(round(self.max_shift_fraction * video.shape[-2]))
        out = random_translate(random_zoom(random_time_reverse(video, self.reverse), tuple(self.zoom)), shift)
        out = random_illumination(random_affine_intensity(out, self.contrast, self.brightness), self.illumination)
        if self.video_noise > 0:
            std = torch.empty(video.shape[0], 1, 1, 1, 1, dtype=video.dtype).uniform_(0.0, self.video_noise)
            out = out + std * torch.randn_like(out)
        return out

    def audio(self, audio: torch.Tensor) -> torch.Tensor:
        """``(b, samples) -> (b, samples)``, one random draw per clip."""
        _check_float(audio, 2, "audio")
        lo, hi = self.gain
        if not 0 < lo <= hi or self.noise_std < 0:
            raise ValueError(f"need 0 < gain low <= high and noise_std >= 0, got {self.gain}, {self.noise_std}")
        if not 0.0 <= self.time_shift < 1.0:
            raise ValueError(f"time_shift must be in [0, 1), got {self.time_shift}")
        b, n = audio.shape
        s_lo, s_hi = _factor_range(tuple(self.speed), "factor")
        if s_lo == s_hi == 1.0:
            out = random_time_shift(audio, self.time_shift)
        else:
            # random_time_shift(random_speed(audio)) in one resampling pass, with the same
            # random draws in the same order (speed factors, then shifts).
            rate = torch.empty(b, 1, dtype=torch.float64).uniform_(s_lo, s_hi)
            shifts = _draw_shifts(b, n, self.time_shift)
            index = torch.arange(n, dtype=torch.float32)[None, :]
            if shifts is not None:  # the circular shift's source samples (exact in float32 below 2**24)
                index = torch.remainder(index - shifts.to(torch.float32), n)
            out = _sample_linear(audio, _speed_positions(index, rate, n))
        g = torch.empty(b, 1, dtype=audio.dtype).uniform_(lo, hi)
        return torch.addcmul(self.noise_std * torch.randn_like(out), out, g)

    def fbank(self, features: torch.Tensor, frontend: Any) -> torch.Tensor:
        """The audio augmentation applied to raw log-mel features instead of the waveform.

        Same ``speed``, ``time_shift`` and ``gain`` ranges as :meth:`audio` (shift in whole
        frames), and white noise of ``noise_std`` as its mean power floor; see
        :func:`random_fbank_perturb`. Used when ``audio_domain == "fbank"``.

        Args:
            features: ``(b, M, T)`` raw features from ``frontend.features`` (kind ``"fbank"``).
            frontend: the model's :class:`~zorro.audio.AudioFrontend`.

        Returns:
            ``(b, M, T)`` raw (unnormalised) log-mel features; the model normalises them.
        """
        if getattr(frontend, "kind", None) != "fbank":
            raise ValueError(f"ClipAugment.fbank needs the model's fbank front-end, got {getattr(frontend, 'kind', frontend)!r}")
        # What the floor depends on: the analysis geometry, the device, the noise level.
        key = (frontend.analysis_key(), str(frontend.window.device), float(self.noise_std))
        if key not in self._noise_floors:
            floor = fbank_noise_floor(frontend, self.noise_std) if self.noise_std > 0 else None
            self._noise_floors[key] = (floor, None if floor is None else fbank_noise_dof(frontend))
        floor, dof = self._noise_floors[key]
        return random_fbank_perturb(
            features, frontend.mel_centres_hz(), speed=tuple(self.speed), time_shift=self.time_shift, gain=tuple(self.gain),
            noise_floor=floor, noise_dof=dof if self.noise_draws else None, tilt=self.spectral_tilt,
        )
