"""A per-item time limit on decoding, so that one file that makes the decoder hang costs a
counted skip, not a stalled training run.

:func:`decode_time_limit` arms a one-shot ``SIGALRM`` timer (``signal.setitimer``) around a
block; when it fires, :class:`DecodeTimeout` (a :class:`DecodeError`) is raised inside the
block, wherever the decode is, and the dataset skips and counts the file like any other
unreadable one.

Where it works: in the main thread of a process (DataLoader worker processes run
``__getitem__`` there; so does a training loop without workers) on POSIX systems. Elsewhere
(another thread, Windows, or an outer ``ITIMER_REAL`` timer already armed) the block runs
without a limit and this is logged once. Python runs a signal handler between bytecodes, so
the limit interrupts decoding that returns to Python now and then, which our decode loops do
after every packet and frame; a single FFmpeg call that never returns is not interrupted.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from zorro.data.decode.errors import DecodeError

logger = logging.getLogger(__name__)

_warned_unavailable = False


class DecodeTimeout(DecodeError):
    """Decoding one item took longer than the per-item time limit (``seconds``)."""

    def __init__(self, path: str | os.PathLike, seconds: float):
        self.seconds = float(seconds)
        super().__init__(path, f"decoding took longer than the {seconds:g} s per-item time limit")


def _check_seconds(seconds: float | None) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (seconds > 0) or not math.isfinite(seconds):
        raise ValueError(f"decode time limit must be a positive number of seconds or None, got {seconds!r}")
    return float(seconds)


def time_limit_available() -> bool:
    """Whether :func:`decode_time_limit` can arm its timer here (POSIX, main thread, no
    ``ITIMER_REAL`` timer running)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


@contextmanager
def decode_time_limit(path: str | os.PathLike, seconds: float | None) -> Iterator[None]:
    """Raise :class:`DecodeTimeout` naming ``path`` if the block runs longer than
    ``seconds`` (wall-clock s); ``None`` disables the limit. See the module doc for where
    the limit applies."""
    global _warned_unavailable
    seconds = _check_seconds(seconds)
    if seconds is None:
        yield
        return
    if not time_limit_available():
        if not _warned_unavailable:
            _warned_unavailable = True
            logger.warning(
                "the per-item decode time limit needs SIGALRM in a process's main thread with no other "
                "ITIMER_REAL timer; decoding runs without it here"
            )
        yield
        return

    def on_alarm(signum, frame):
        raise DecodeTimeout(path, seconds)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
