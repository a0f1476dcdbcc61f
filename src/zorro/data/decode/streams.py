"""Finding a file's audio and video streams and where on the timeline they hold data."""

from __future__ import annotations

import os
from typing import Any

import av

from zorro.data.decode.errors import DecodeError


def available_backends() -> list[str]:
    """Decoder backends usable here: always ``"pyav"``, plus ``"torchcodec"`` if importable."""
    out = ["pyav"]
    try:
        import torchcodec.decoders  # noqa: F401

        out.append("torchcodec")
    except Exception:  # torchcodec missing or its FFmpeg libraries not loadable
        pass
    return out


# Highest audio sample rate (Hz) taken at face value: FFmpeg's own PCM and lossless
# formats top out at 768 kHz; a damaged header can claim many MHz, and decoding and
# resampling such a stream costs seconds and gigabytes per clip.
MAX_SAMPLE_RATE = 768_000


def _check_path(path: str | os.PathLike) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.fspath(path)
    if not os.path.exists(p):
        raise DecodeError(p, "file does not exist")
    if os.path.isdir(p):
        raise DecodeError(p, "is a directory, expected a media file")
    if os.path.getsize(p) == 0:
        raise DecodeError(p, "file is empty")
    return p


def _is_attached_picture(stream: Any) -> bool:
    disposition = getattr(stream, "disposition", None)
    flag = getattr(getattr(av.stream, "Disposition", None), "attached_pic", None)
    if disposition is None or flag is None:  # a PyAV without dispositions
        return False
    return bool(disposition & flag)


def _pick_stream(container: Any, kind: str, problems: list[str]) -> Any | None:
    """The stream of ``kind`` (``"audio"`` / ``"video"``) to decode, or None. Streams FFmpeg
    has no decoder for (no codec context: an unknown or damaged codec id) and cover pictures
    are passed over; why a stream was passed over is appended to ``problems``."""
    streams = []
    for s in getattr(container.streams, kind):
        if kind == "video" and _is_attached_picture(s):
            continue
        if s.codec_context is None:
            problems.append(f"{kind} stream #{s.index} has no decoder (codec context)")
            continue
        streams.append(s)
    if not streams:
        return None
    try:
        best = container.streams.best(kind)
    except (av.error.FFmpegError, ValueError):  # no "best" stream: take the first
        best = None
    if best is not None and best in streams:
        return best
    return streams[0]


def _stream_span(stream: Any, container: Any, origin: float) -> tuple[float | None, float | None]:
    """(start, end) of a stream in s on the container timeline (None where unknown)."""
    tb = stream.time_base
    start = end = None
    if stream.start_time is not None and tb is not None:
        start = float(stream.start_time * tb) - origin
    if stream.duration is not None and tb is not None and start is not None:
        end = start + float(stream.duration * tb)
    elif container.duration is not None:
        end = container.duration / 1e6  # container duration is from the container start
    return start, end
