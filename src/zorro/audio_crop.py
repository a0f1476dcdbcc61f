"""When cropping audio features to whole patches deserves a warning, and what it says.

The model cuts its audio features ``(freq, frames)`` down to whole ``(p_f, p_t)`` patches. On
the time axis that drops fewer than ``p_t`` frames at the end of every clip; on the
frequency axis it drops the highest bands of every frame. :func:`audio_crop_message`
decides whether that is worth telling:

* frequency bands dropped: always (every frame loses them); the message names the number
  of bands that fits (``fbank_num_mel_bins``, a multiple of ``p_f``);
* time frames dropped: only when at least half a patch is lost (e.g. 6 of 8 frames: the last
  60 ms of each clip are never seen); a smaller remainder is a fraction of one patch at the
  clip's very end and stays silent. The message names the clip lengths that fit whole
  patches exactly (``data.duration``).

:func:`warn_audio_crop` issues it at most once per process for each feature shape, so a run
(any number of models and calls) says it once.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["audio_crop_message", "reset_audio_crop_warnings", "warn_audio_crop"]

_warned: set[tuple] = set()


def _fitting_durations(frontend: Any, frames: int, patch: int) -> str:
    """``"1.935 s or 2.015 s"``: the shortest clips whose features are exactly the whole
    patches just below and just above ``frames`` (from the front-end's framing)."""
    rate = float(getattr(frontend, "sample_rate", 0) or 0)
    fits = getattr(frontend, "min_num_samples", None)
    if not rate or fits is None:
        return f"a clip length giving a multiple of {patch} frames"
    down, up = frames // patch * patch, (frames // patch + 1) * patch
    options = [fits(n) for n in (down, up) if n >= 1]
    return " or ".join(f"{n / rate:.3f} s ({n} samples)" for n in options)


def audio_crop_message(height: int, width: int, patch_size: tuple[int, int], frontend: Any = None) -> str | None:
    """The warning for cropping ``(height, width)`` = ``(freq bins, frames)`` audio features
    to whole ``patch_size`` = ``(p_f, p_t)`` patches, or None when it stays silent (see the
    module docstring). ``frontend`` (an :class:`~zorro.audio.AudioFrontend`) lets the message
    name the clip lengths that fit."""
    p_f, p_t = patch_size
    lost_f, lost_t = height % p_f, width % p_t
    rh, rw = height - lost_f, width - lost_t
    parts = []
    if lost_f:
        parts.append(f"the top {lost_f} of {height} frequency bands are dropped from every frame: use a number of bands "
                     f"that is a multiple of {p_f} (model.arch.fbank_num_mel_bins {rh} or {rh + p_f})")
    if lost_t and 2 * lost_t >= p_t:
        shift = getattr(frontend, "frame_shift", None) if getattr(frontend, "kind", "fbank") == "fbank" else None
        span = f" (about {lost_t * shift:.0f} ms of each clip)" if shift else ""
        parts.append(f"the last {lost_t} of {width} frames{span} are never seen: give clips of "
                     f"{_fitting_durations(frontend, width, p_t)} (data.duration) to keep every frame")
    if not parts:
        return None
    return (f"audio features of shape {(height, width)} (freq, frames) were cropped to {(rh, rw)} to fit whole "
            f"{tuple(patch_size)} patches: " + "; ".join(parts) + " (said once per run)")


def warn_audio_crop(height: int, width: int, patch_size: tuple[int, int], frontend: Any = None, *, stacklevel: int = 4) -> None:
    """Issue :func:`audio_crop_message` as a ``UserWarning``, once per process for each
    ``(height, width, patch_size)``; nothing when the message is None."""
    key = (int(height), int(width), tuple(int(p) for p in patch_size))
    if key in _warned:
        return
    _warned.add(key)
    message = audio_crop_message(height, width, patch_size, frontend)
    if message is not None:
        warnings.warn(message, stacklevel=stacklevel)


def reset_audio_crop_warnings() -> None:
    """Forget which shapes were warned about (the next crop of each warns again; for tests)."""
    _warned.clear()
