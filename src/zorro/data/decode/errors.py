"""The one exception a damaged or unsupported media file ends in (:class:`DecodeError`), and
the one place that decides which decoder errors mean "this file is damaged".

PyAV raises FFmpeg's error codes as subclasses of ``av.error.FFmpegError`` that also derive
from Python built-ins: ``av.error.InvalidDataError`` is a ``ValueError``,
``av.error.PermissionError`` (EPERM, e.g. a seek the demuxer refuses) a ``PermissionError``,
``av.error.MemoryError`` (ENOMEM, e.g. a damaged size field asking for an impossible
allocation) a ``MemoryError``, ``av.error.EOFError`` an ``EOFError``, ``av.error.OSError``
(e.g. EOPNOTSUPP from swscale for a pixel format it cannot convert) an ``OSError``, and so
on. A ``try/except OSError`` or ``except ValueError`` written for one family therefore
catches or misses the others by accident; :func:`decoder_failure` names each family
explicitly, and :func:`decode_errors` turns exactly those into :class:`DecodeError` at the
reader's boundary. Anything else (``AttributeError``, ``TypeError``, a plain ``ValueError``
from our own argument checks, ...) is a bug of ours or a bad call and propagates unchanged.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import av


class DecodeError(RuntimeError):
    """A media file could not be read at all. ``path`` names the file; the message says why."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path!r}: {reason}")


# FFmpeg error families, most specific first: (built-in base of the av.error class, what it
# says about the file). Every av.error class derives from av.error.FFmpegError; the built-in
# base tells the family.
_FAMILIES: tuple[tuple[type[BaseException], str], ...] = (
    (MemoryError, "FFmpeg could not allocate memory (a damaged size or dimension field)"),
    (PermissionError, "FFmpeg refused the operation"),
    (EOFError, "the data ended early"),
    (LookupError, "no decoder, demuxer or parser for it"),
    (NotImplementedError, "uses a feature FFmpeg does not implement"),
    (OverflowError, "a field is out of range"),
    (ValueError, "invalid data"),
    (OSError, "FFmpeg reported an I/O or unsupported-operation error"),
)


def decoder_failure(exc: BaseException) -> str | None:
    """What a decoder exception says about the file, or None when it is not a decoder error.

    Decoder errors are ``av.error.FFmpegError`` and its subclasses, except
    ``av.error.PyAVCallbackError`` (a Python callback that raised inside FFmpeg: not the
    file's fault). The returned text names the family and carries FFmpeg's message, e.g.
    ``"invalid data (InvalidDataError: [Errno 1094995529] Invalid data found ...)"``.
    """
    if not isinstance(exc, av.error.FFmpegError) or isinstance(exc, av.error.PyAVCallbackError):
        return None
    what = "FFmpeg error"
    for base, text in _FAMILIES:
        if isinstance(exc, base):
            what = text
            break
    return f"{what} ({type(exc).__name__}: {exc})"


@contextmanager
def decode_errors(path: str | os.PathLike, stage: str) -> Iterator[None]:
    """Turn decoder errors raised inside the block into :class:`DecodeError` naming ``path``
    and ``stage`` (what was being done, e.g. ``"decoding video in [0.000, 1.000) s"``).
    :class:`DecodeError` and every other exception pass through unchanged."""
    try:
        yield
    except DecodeError:
        raise
    except av.error.FFmpegError as exc:
        reason = decoder_failure(exc)
        if reason is None:
            raise
        raise DecodeError(path, f"{stage}: {reason}") from exc
