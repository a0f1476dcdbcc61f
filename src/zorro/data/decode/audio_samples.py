"""Audio sample arithmetic: decoded frames to float arrays, channel downmix, resampling."""

from __future__ import annotations

from typing import Any, Sequence

import av
import numpy as np


def _audio_channels(frame: Any, channels: int) -> Sequence[np.ndarray] | None:
    """A decoded audio frame's channels, each ``(samples,)`` float32 in [-1, 1]: read-only
    views of the frame's buffers for float formats (what AAC, MP3, Opus and Vorbis decoders
    output), converted arrays otherwise; None for an unknown sample format."""
    name = frame.format.name
    samples = frame.samples
    if name == "fltp":
        return [np.frombuffer(plane, dtype=np.float32, count=samples) for plane in frame.planes]
    if name == "flt":
        return np.frombuffer(frame.planes[0], dtype=np.float32, count=samples * channels).reshape(samples, channels).T
    return _audio_to_planar_float(frame)


# FFmpeg sample formats (packed name; the planar one adds "p"): numpy dtype, and the
# (offset, scale) that maps a sample onto [-1, 1].
_SAMPLE_FORMATS: dict[str, tuple[type, float, float]] = {
    "u8": (np.uint8, 128.0, 1.0 / 128.0),
    "s16": (np.int16, 0.0, 1.0 / 32768.0),
    "s32": (np.int32, 0.0, 1.0 / 2147483648.0),
    "s64": (np.int64, 0.0, 1.0 / 9223372036854775808.0),
    "flt": (np.float32, 0.0, 1.0),
    "dbl": (np.float64, 0.0, 1.0),
}


def _audio_to_planar_float(frame: Any) -> np.ndarray | None:
    """A decoded audio frame as ``(channels, samples)`` float32 in [-1, 1], read from the
    frame's buffers for every FFmpeg sample format (``AudioFrame.to_ndarray`` rejects some,
    e.g. ``s64`` that a damaged header can select); None for a format FFmpeg may add later."""
    name = frame.format.name
    planar = name.endswith("p")
    spec = _SAMPLE_FORMATS.get(name[:-1] if planar else name)
    if spec is None:
        return None
    dtype, offset, scale = spec
    channels = len(frame.layout.channels)
    samples = frame.samples
    if planar:
        arr = np.stack([np.frombuffer(plane, dtype=dtype, count=samples) for plane in frame.planes[:channels]])
    else:
        arr = np.frombuffer(frame.planes[0], dtype=dtype, count=samples * channels).reshape(samples, channels).T
    if dtype in (np.float32, np.float64):
        return arr.astype(np.float32)
    out = arr.astype(np.float64 if dtype == np.int64 else np.float32)
    if offset:
        out -= offset
    out *= scale
    return out.astype(np.float32, copy=False)


def _downmix(buf: np.ndarray, layout: Any, out: np.ndarray | None = None) -> np.ndarray:
    """``(C, N)`` -> ``(N,)``: the mean of the channels, leaving out low-frequency-effects
    channels when others exist (keeps a signal present on every channel at its level).
    ``out``: optional ``(N,)`` float32 array to write into (returned)."""
    if buf.shape[0] == 1:
        if out is None:
            return buf[0]
        out[:] = buf[0]
        return out
    names = [getattr(ch, "name", "") for ch in getattr(layout, "channels", ())]
    keep = [i for i, n in enumerate(names) if n != "LFE"] if len(names) == buf.shape[0] else []
    if keep and len(keep) < buf.shape[0]:
        buf = buf[keep]
    return buf.mean(axis=0, out=out)


def _resample(mono: np.ndarray, rate: int, sr: int) -> np.ndarray:
    """Convert mono float audio from ``rate`` to ``sr`` Hz with FFmpeg's swresample
    (band-limited); output sample k is at the time of input sample ``k * rate / sr``."""
    if rate == sr:
        return mono.astype(np.float32, copy=True)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono[None, :], dtype=np.float32), format="fltp", layout="mono")
    return _resample_frame(frame, rate, sr)


def _downmix_resample(buf: np.ndarray, layout: Any, rate: int, sr: int) -> np.ndarray:
    """``(C, N)`` float32 audio at ``rate`` Hz -> ``(M,)`` mono float32 at ``sr`` Hz: the same
    as ``_resample(_downmix(buf, layout), rate, sr)``, with the downmix written straight into
    the resampler's input frame instead of copied there."""
    if rate == sr:
        return np.array(_downmix(buf, layout), dtype=np.float32, copy=True)
    n = buf.shape[1]
    frame = av.AudioFrame(format="fltp", layout="mono", samples=n)
    plane = np.frombuffer(frame.planes[0], dtype=np.float32, count=n)
    if not plane.flags.writeable:  # a PyAV whose frame buffers are read-only: copy instead
        return _resample(_downmix(buf, layout), rate, sr)
    _downmix(buf, layout, out=plane)
    return _resample_frame(frame, rate, sr)


def _resample_frame(frame: Any, rate: int, sr: int) -> np.ndarray:
    """Resample a mono float ``av.AudioFrame`` holding the whole signal at ``rate`` Hz to
    ``(M,)`` float32 at ``sr`` Hz (swresample through ``av.AudioResampler``, flushed).

    The resampler's filter graph runs on one thread: the graph sits in a reference cycle, so
    the garbage collector frees it later, possibly in a DataLoader worker forked meanwhile,
    and freeing a graph's thread pool in a forked process (whose pool threads were not
    copied) deadlocks or crashes. Resampling gains nothing from the pool anyway."""
    frame.sample_rate = rate
    frame.pts = None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr, threads=1)
    chunks = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    if len(chunks) == 1:
        return chunks[0].astype(np.float32, copy=False)
    return np.concatenate(chunks).astype(np.float32, copy=False)
