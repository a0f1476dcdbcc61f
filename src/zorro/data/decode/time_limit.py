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
after every packet and frame.

A single FFmpeg call that never returns cannot be interrupted from Python. With
``exit_if_stuck=True`` (what datasets pass inside DataLoader workers) a watchdog thread
covers that case: if the block is still running ``HARD_LIMIT_FACTOR * seconds +
HARD_LIMIT_EXTRA`` seconds after it started, it logs an error naming the file and ends the
worker process, so the DataLoader raises (worker exited unexpectedly) instead of training
stalling forever.
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

# The watchdog's limit: HARD_LIMIT_FACTOR * seconds + HARD_LIMIT_EXTRA (s), well past the
# alarm, which handles every decode that returns to Python.
HARD_LIMIT_FACTOR = 2.0
HARD_LIMIT_EXTRA = 5.0
STUCK_EXIT_CODE = 75  # the exit status of a worker ended by the watchdog


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


def _stuck(path: str | os.PathLike, after: float) -> None:
    logger.error(
        "decoding %s has not returned for %.0f s (stuck inside one FFmpeg call, past the per-item time limit): "
        "ending this DataLoader worker so that training stops with an error instead of stalling; "
        "remove the file from the manifest",
        path,
        after,
    )
    logging.shutdown()
    os._exit(STUCK_EXIT_CODE)


@contextmanager
def decode_time_limit(path: str | os.PathLike, seconds: float | None, *, exit_if_stuck: bool = False) -> Iterator[None]:
    """Raise :class:`DecodeTimeout` naming ``path`` if the block runs longer than
    ``seconds`` (wall-clock s); ``None`` disables the limit. With ``exit_if_stuck`` (only
    for DataLoader worker processes) a block still running long after the limit ends the
    process (see the module doc)."""
    seconds = _check_seconds(seconds)
    if seconds is None:
        yield
        return
    watchdog = None
    if exit_if_stuck:
        after = HARD_LIMIT_FACTOR * seconds + HARD_LIMIT_EXTRA
        watchdog = threading.Timer(after, _stuck, args=(path, after))
        watchdog.daemon = True
        watchdog.start()
    try:
        with _alarm(path, seconds):
            yield
    finally:
        if watchdog is not None:
            watchdog.cancel()


@contextmanager
def _alarm(path: str | os.PathLike, seconds: float) -> Iterator[None]:
    global _warned_unavailable
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
