"""What a run reports while it trains, besides ``log.jsonl``: TensorBoard event files and
progress on the console.

* :class:`TensorBoardLog` writes every ``log.jsonl`` record as TensorBoard scalars into
  ``OUT/tensorboard/`` (``tensorboard --logdir runs``): ``loss``, ``lr``,
  ``throughput/clips_per_s``, ``grad_norm``, ``loss_parts/<term>`` and ``eval/<metric>``
  (nested metrics joined with ``/``, e.g. ``eval/audio/top1``), all against the optimiser
  step. A resumed run drops the events after its checkpoint's step, as ``log.jsonl`` does.
* :class:`Progress` shows a ``tqdm`` bar when the console (stderr) is a terminal; otherwise
  (output redirected to a file, a batch job) it logs one INFO line every tenth of the run or
  every minute, whichever comes first, so a log holds a bounded number of progress lines.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

__all__ = ["TensorBoardLog", "Progress", "scalars_of"]

logger = logging.getLogger("zorro.train")


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The TensorBoard scalars of one ``log.jsonl`` record: ``{tag: value}`` (see the module
    docstring for the tags); non-numbers (confusion matrices, names) are left out."""
    out: dict[str, float] = {}
    for key, tag in (("loss", "loss"), ("lr", "lr"), ("clips_per_s", "throughput/clips_per_s"), ("grad_norm", "grad_norm")):
        if _is_number(record.get(key)):
            out[tag] = float(record[key])
    for key, value in (record.get("parts") or {}).items():
        if _is_number(value) and key != "total":
            out[f"loss_parts/{key}"] = float(value)

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                flatten(f"{prefix}/{k}", v)
        elif _is_number(value):
            out[prefix] = float(value)

    if isinstance(record.get("eval"), Mapping):
        flatten("eval", record["eval"])
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TensorBoardLog:
    """TensorBoard event files of one run, in ``folder`` (created on first use).

    Args:
        folder: where the event files go (the trainer uses ``OUT/tensorboard``).
        enabled: False writes nothing (other ranks, or ``run.tensorboard: false``).
        purge_step: when resuming, events at or after this step (written after the
            checkpoint the run resumes from) are dropped; None for a fresh run.

    ``torch.utils.tensorboard`` is imported only when a run writes (it needs the
    ``tensorboard`` package, a dependency of zorro); if it cannot be imported the run goes
    on without event files and says so once in a warning.
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True, purge_step: int | None = None) -> None:
        self.folder = Path(folder)
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            logger.warning("no TensorBoard event files for this run (%s); pip install tensorboard", err)
            return
        self._writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step)

    @property
    def enabled(self) -> bool:
        """Whether event files are being written."""
        return self._writer is not None

    def write(self, record: Mapping[str, Any]) -> None:
        """Add the scalars of a ``log.jsonl`` record (it must carry ``"step"``)."""
        if self._writer is None:
            return
        step = int(record["step"])
        for tag, value in scalars_of(record).items():
            self._writer.add_scalar(tag, value, global_step=step)
        if "eval" in record:
            self._writer.flush()  # evaluations are rare and worth seeing at once

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class Progress:
    """Progress of a run of ``total`` optimiser steps, on rank 0.

    On a terminal (``stream.isatty()``), a ``tqdm`` bar; elsewhere an INFO log line (logger
    ``zorro.train``) when the run has advanced by ``every_fraction`` of ``total`` steps or
    ``every_seconds`` have passed since the last line, and at the last step. A run therefore
    logs at most ``ceil(1 / every_fraction) + 1 + duration / every_seconds`` lines.

    Args:
        total: steps of the whole run; ``initial``: the step it starts from (resume).
        desc: a short name shown with every update (the task).
        enabled: False shows nothing.
        stream: the console; default ``sys.stderr``.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str = "", enabled: bool = True, stream: TextIO | None = None,
                 every_fraction: float = 0.1, every_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < every_fraction <= 1:
            raise ValueError(f"every_fraction must be in (0, 1], got {every_fraction!r}")
        self.total, self.desc, self.enabled = int(total), desc, enabled
        self.every_steps = max(1, math.ceil(self.total * every_fraction))
        self.every_seconds = float(every_seconds)
        self.clock = clock
        self.lines = 0  # log lines written (non-terminal mode)
        self._bar = None
        self._start = self._last_time = clock()
        self._initial = self._last_step = int(initial)
        stream = sys.stderr if stream is None else stream
        if enabled and getattr(stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=stream)

    def update(self, step: int, *, loss: float, clips_per_s: float) -> None:
        """Report that optimiser step ``step`` (1-based count) finished with ``loss``."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(loss=f"{loss:.3f}", clips_s=f"{clips_per_s:.0f}")
            return
        now = self.clock()
        due = step - self._last_step >= self.every_steps or now - self._last_time >= self.every_seconds or step >= self.total
        if not due:
            return
        elapsed = now - self._start
        rate = (step - self._initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - step) / rate if rate > 0 else float("nan")
        logger.info("%s: step %d/%d (%.0f%%), loss %.4f, %.0f clips/s, %s elapsed, ~%s left", self.desc, step, self.total,
                    100.0 * step / max(1, self.total), loss, clips_per_s, _duration(elapsed), _duration(left))
        self.lines += 1
        self._last_step, self._last_time = step, now

    def close(self) -> None:
        """Close the bar (if any)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    """``75.0`` -> ``"1m15s"``; ``nan`` -> ``"?"``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
