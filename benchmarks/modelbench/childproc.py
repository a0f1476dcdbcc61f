"""What every benchmark child shares: how a task runs in a fresh interpreter and hands back
its result, and the few measurements the children make the same way.

The parent runs ``script --child TASK_JSON``; the child prints its JSON result on a line
starting with :data:`RESULT_MARKER` (:func:`emit_result`), which the parent picks out of
everything else the child printed (:func:`run_script`).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: The prefix of the line that carries a child's JSON result.
RESULT_MARKER = "@@RESULT@@"


def emit_result(result: dict[str, Any]) -> None:
    """Print ``result`` as the child's result line (JSON after :data:`RESULT_MARKER`)."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


@dataclass
class ChildRun:
    """How a child ended.

    Attributes:
        result: its JSON result, or None when it printed none.
        returncode: its exit status; None when it ran past the timeout.
        tail: the last lines of its stderr (of its stdout when stderr is empty).
    """

    result: dict[str, Any] | None
    returncode: int | None
    tail: list[str] = field(default_factory=list)


def run_script(script: Path, task: dict[str, Any], timeout: float, env: dict[str, str] | None = None,
               tail_lines: int = 3) -> ChildRun:
    """Run ``python script --child TASK_JSON`` with ``env`` added to this environment, for at
    most ``timeout`` seconds; its result line, exit status and the last ``tail_lines`` lines
    of its output."""
    cmd = [sys.executable, str(Path(script).resolve()), "--child", json.dumps(task)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        return ChildRun(None, None)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return ChildRun(json.loads(line[len(RESULT_MARKER):]), proc.returncode)
    return ChildRun(None, proc.returncode, (proc.stderr or proc.stdout).strip().splitlines()[-tail_lines:])


def rss_kib(field_name: str) -> int:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``,
    ``RssFile``, ...) in KiB; without ``/proc``, the peak RSS from ``getrusage``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def best_seconds(fn: Callable[[], Any], rounds: int = 4) -> float:
    """The shortest of ``rounds`` timed calls of ``fn`` (seconds), after one untimed call."""
    fn()
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
