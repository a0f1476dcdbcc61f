"""Fuzz the media decoder: seeded mutations of synthetic media through ``read_clip``.

Each case copies one seed file (written by :mod:`media`: every container and codec the
tests use), damages it with one seeded mutation, and decodes a clip from it in a worker
process under a time limit. The outcome of a case is one of

* ``ok``: a clip came back (``recovered`` when damaged packets were skipped or part of the
  window is padding),
* ``DecodeError``: the documented failure for an unreadable file,
* ``other``: any other exception (a defect: the decoder let an error escape),
* ``crash``: the worker died from a signal (a defect in FFmpeg or PyAV),
* ``hang``: the case ran past the time limit (the worker is killed and replaced).

A case is fully determined by ``(seed name, mutation kind, case seed)``, so any reported
case replays alone with ``--replay NAME:KIND:SEED``.

Usage (``make fuzz`` runs the first line)::

    python tests/fuzz_decode.py --cases 10000 --workers 2
    python tests/fuzz_decode.py --replay mp4:flip:123
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import multiprocessing as mp
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing.connection import wait
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402

KINDS = ("flip", "truncate", "delete", "duplicate", "zero", "header", "insert")
OUTCOMES = ("ok", "recovered", "DecodeError", "other", "crash", "hang")
DEFAULT_TIME_LIMIT = 10.0  # s per case before it counts as a hang
WORKER_MEMORY_LIMIT = 4 << 30  # bytes of address space per worker (a header claiming a huge frame)


def _vorbis_ogg(path: Path, sample_rate: int = 22050, seconds: float = 2.0) -> Path:
    """Audio-only Ogg Vorbis (FFmpeg's native Vorbis encoder is marked experimental)."""
    out = av.open(str(path), mode="w")
    stream = out.add_stream("vorbis", rate=sample_rate, layout="stereo", options={"strict": "experimental"})
    for off in range(0, int(sample_rate * seconds), 1024):
        t = (off + np.arange(1024)) / sample_rate
        data = np.repeat((0.5 * np.sin(2 * np.pi * 440.0 * t))[None], 2, axis=0).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, off, Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    return path


def build_seeds(folder: str | Path) -> dict[str, Path]:
    """Write the undamaged seed files into ``folder``; returns name -> path.

    Containers and codecs: mp4 (h264 + aac), mp4_bframes (h264 with B-frames + aac), webm
    (vp9 + opus), mkv (h264 + flac), avi (mpeg4 + pcm), mpg (MPEG-PS: mpeg2video + mp2),
    and audio-only wav (pcm), flac, mp3 (lame), ogg (vorbis), opus (opus in ogg).
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    mk = media.make_media
    seeds = {
        "mp4": mk(d / "s.mp4", burst=(0.5, 0.7)),
        "mp4_bframes": mk(d / "b.mp4", x264_preset="veryfast"),
        "webm": mk(d / "s.webm", video_codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000),
        "mkv": mk(d / "s.mkv", audio_codec="flac"),
        "avi": mk(d / "s.avi", video_codec="mpeg4", audio_codec="pcm_s16le"),
        "mpg": mk(d / "s.mpg", container_format="mpeg", video_codec="mpeg2video", audio_codec="mp2", sample_rate=44100),
        "wav": mk(d / "s.wav", video_codec=None, audio_codec="pcm_s16le", layout="mono"),
        "flac": mk(d / "s.flac", video_codec=None, audio_codec="flac"),
        "mp3": mk(d / "s.mp3", video_codec=None, audio_codec="libmp3lame", sample_rate=44100),
        "ogg": _vorbis_ogg(d / "s.ogg"),
        "opus": mk(d / "s.opus", container_format="ogg", video_codec=None, audio_codec="libopus", sample_rate=48000),
    }
    return seeds


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One seeded mutation of ``data`` (the whole file's bytes).

    ``flip``: 1-16 random bytes replaced; ``truncate``: cut at a random point; ``delete`` /
    ``duplicate`` / ``zero``: a random span (1 byte to 1/4 of the file) removed, repeated
    in place, or zeroed; ``header``: 1-8 bytes of the first 512 replaced (container headers,
    codec configuration); ``insert``: 1-256 random bytes inserted.
    """
    n = len(data)
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(int(rng.integers(1, 17))):
            buf[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        return bytes(buf)
    if kind == "truncate":
        return bytes(buf[: int(rng.integers(1, n))])
    if kind == "header":
        head = min(n, 512)
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(0, head))] = int(rng.integers(0, 256))
        return bytes(buf)
    if kind == "insert":
        at = int(rng.integers(0, n + 1))
        junk = rng.integers(0, 256, int(rng.integers(1, 257)), dtype=np.uint8).tobytes()
        return bytes(buf[:at]) + junk + bytes(buf[at:])
    size = int(rng.integers(1, max(2, n // 4)))
    at = int(rng.integers(0, n - size + 1))
    if kind == "delete":
        return bytes(buf[:at] + buf[at + size :])
    if kind == "duplicate":
        return bytes(buf[: at + size] + buf[at : at + size] + buf[at + size :])
    if kind == "zero":
        buf[at : at + size] = bytes(size)
        return bytes(buf)
    raise ValueError(f"unknown mutation kind {kind!r}, expected one of {KINDS}")


@dataclass(frozen=True)
class Case:
    """One fuzz case: which seed, which mutation, which seed of the random draws."""

    seed_name: str
    kind: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.seed_name}:{self.kind}:{self.seed}"


def make_cases(seed_names: list[str], count: int, base_seed: int = 0) -> list[Case]:
    """``count`` cases cycling over every (seed file, mutation kind) pair."""
    pairs = [(s, k) for s in seed_names for k in KINDS]
    return [Case(pairs[i % len(pairs)][0], pairs[i % len(pairs)][1], base_seed + i) for i in range(count)]


def run_case(case: Case, seeds: dict[str, Path], workdir: Path, threads: int = 1) -> dict:
    """Damage the seed, decode a clip from it (in this process) with ``threads`` decoder
    threads (1: as in DataLoader workers; 0: FFmpeg's choice, frame threading); returns the
    outcome record."""
    from zorro.data import DecodeError, read_clip

    rng = np.random.default_rng(case.seed)
    data = mutate(seeds[case.seed_name].read_bytes(), case.kind, rng)
    path = workdir / f"case{Path(seeds[case.seed_name]).suffix}"
    path.write_bytes(data)
    # the read varies with the case too: window start, keyframe mode, crop
    start = None if rng.random() < 0.5 else float(rng.uniform(0.0, 2.0))
    seek_mode = "keyframe" if rng.random() < 0.25 else "exact"
    crop = "random" if rng.random() < 0.5 else "center"
    t0 = time.perf_counter()
    rec = {"case": case.key, "kind": case.kind, "seed_name": case.seed_name}
    try:
        clip = read_clip(
            path, start=start, duration=1.0, num_frames=4, image_size=32, seek_mode=seek_mode,
            crop=crop, rng=rng, threads=threads,
        )
        recovered = clip.skipped_packets > 0 or clip.padded
        rec["outcome"] = "recovered" if recovered else "ok"
    except DecodeError as exc:
        rec["outcome"] = "DecodeError"
        rec["detail"] = exc.reason[:200]
    except Exception as exc:  # what the fuzzer is here to find
        rec["outcome"] = "other"
        rec["detail"] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"[:300]
        rec["where"] = traceback.format_exc()[-4000:]
    rec["seconds"] = time.perf_counter() - t0
    return rec


def limit_memory() -> None:
    """Cap this process's address space at ``WORKER_MEMORY_LIMIT`` (a damaged header can ask
    for a huge frame; the cap keeps a shared machine safe and turns it into ENOMEM)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_LIMIT, WORKER_MEMORY_LIMIT))
    except (ValueError, OSError):
        pass


def _worker(conn, seeds: dict[str, Path], workdir: str, runner) -> None:
    """Worker process loop: receive a case, send back its record, until ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limit_memory()
    import torch

    torch.set_num_threads(1)
    wd = Path(workdir)
    while True:
        case = conn.recv()
        if case is None:
            return
        conn.send(runner(case, seeds, wd))


@dataclass
class _Slot:
    proc: mp.Process
    conn: object
    workdir: str
    case: Case | None = None
    since: float = 0.0


@dataclass
class Report:
    """Counts of a campaign: by outcome, by (mutation kind, outcome), and case times (s)."""

    outcomes: collections.Counter = field(default_factory=collections.Counter)
    by_kind: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    by_seed: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    times: list = field(default_factory=list)
    defects: list = field(default_factory=list)  # records of other / crash / hang
    slowest: list = field(default_factory=list)  # (seconds, case key) of the slowest cases
    wall: float = 0.0

    def add(self, rec: dict) -> None:
        self.outcomes[rec["outcome"]] += 1
        self.by_kind[rec["kind"]][rec["outcome"]] += 1
        self.by_seed[rec["seed_name"]][rec["outcome"]] += 1
        self.times.append(rec["seconds"])
        self.slowest = sorted(self.slowest + [(rec["seconds"], rec["case"])], reverse=True)[:5]
        if rec["outcome"] in ("other", "crash", "hang"):
            self.defects.append(rec)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def format(self) -> str:
        """The report as plain-text tables."""
        t = np.array(self.times) if self.times else np.zeros(1)
        lines = [f"{self.total} cases in {self.wall:.0f} s"]
        lines.append("outcome      " + "  ".join(f"{o:>11}" for o in OUTCOMES))
        lines.append("all          " + "  ".join(f"{self.outcomes[o]:>11}" for o in OUTCOMES))
        for kind in KINDS:
            if kind in self.by_kind:
                lines.append(f"{kind:<12} " + "  ".join(f"{self.by_kind[kind][o]:>11}" for o in OUTCOMES))
        for name in sorted(self.by_seed):
            lines.append(f"{name:<12} " + "  ".join(f"{self.by_seed[name][o]:>11}" for o in OUTCOMES))
        p50, p99, p999 = np.percentile(t, [50, 99, 99.9])
        lines.append(f"time per case (s): median {p50:.3f}, p99 {p99:.3f}, p99.9 {p999:.3f}, max {t.max():.3f}")
        lines.append("slowest cases: " + ", ".join(f"{key} {sec:.2f} s" for sec, key in self.slowest))
        for rec in self.defects:
            lines.append(f"DEFECT {rec['outcome']} {rec['case']}: {rec.get('detail', '')}")
        return "\n".join(lines)


def run_campaign(
    cases: list[Case],
    seeds: dict[str, Path],
    *,
    workers: int = 2,
    time_limit: float = DEFAULT_TIME_LIMIT,
    runner=run_case,
) -> Report:
    """Run ``cases`` over ``workers`` processes; a case past ``time_limit`` (s) is a hang,
    a worker that dies is a crash. ``runner(case, seeds, workdir) -> record`` runs one case
    inside a worker (default :func:`run_case`). Returns the :class:`Report`."""
    ctx = mp.get_context("fork")
    report = Report()
    todo = collections.deque(cases)
    slots: list[_Slot] = []
    tmp = tempfile.TemporaryDirectory(prefix="zorro-fuzz-")

    def spawn(i: int) -> _Slot:
        wd = os.path.join(tmp.name, f"w{i}-{time.monotonic_ns()}")
        os.makedirs(wd)
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, seeds, wd, runner), daemon=True)
        proc.start()
        child.close()
        return _Slot(proc, parent, wd)

    def feed(slot: _Slot) -> None:
        if todo:
            slot.case = todo.popleft()
            slot.since = time.monotonic()
            slot.conn.send(slot.case)
        else:
            slot.case = None

    t_start = time.monotonic()
    try:
        for i in range(max(1, workers)):
            slots.append(spawn(i))
            feed(slots[-1])
        while any(s.case is not None for s in slots):
            busy = [s for s in slots if s.case is not None]
            deadline = min(s.since for s in busy) + time_limit
            ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=max(0.0, deadline - time.monotonic()))
            now = time.monotonic()
            for i, s in enumerate(slots):
                if s.case is None:
                    continue
                rec = None
                if s.conn in ready:
                    try:
                        rec = s.conn.recv()
                    except (EOFError, OSError):
                        rec = None
                if rec is None and (s.proc.sentinel in ready or s.conn in ready):
                    s.proc.join(1.0)
                    code = s.proc.exitcode
                    sig = -code if code is not None and code < 0 else None
                    name = signal.Signals(sig).name if sig else f"exit code {code}"
                    rec = _failure(s.case, "crash", f"worker died: {name}", now - s.since)
                elif rec is None and now - s.since >= time_limit:
                    s.proc.kill()
                    s.proc.join()
                    rec = _failure(s.case, "hang", f"no result after {time_limit:.0f} s", now - s.since)
                if rec is None:
                    continue
                report.add(rec)
                if rec["outcome"] in ("crash", "hang"):
                    s.conn.close()
                    slots[i] = s = spawn(i)
                feed(s)
    finally:
        for s in slots:
            try:
                s.conn.send(None)
            except (OSError, ValueError):
                pass
            s.proc.join(2.0)
            if s.proc.is_alive():
                s.proc.kill()
        tmp.cleanup()
    report.wall = time.monotonic() - t_start
    return report


def _failure(case: Case, outcome: str, detail: str, seconds: float) -> dict:
    return {"case": case.key, "kind": case.kind, "seed_name": case.seed_name, "outcome": outcome, "detail": detail, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    """Command line: run a campaign and print the report; exit status 1 on any defect."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="seed of the first case (cases use seed, seed+1, ...)")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="s per case before it is a hang")
    p.add_argument("--replay", help="run one case NAME:KIND:SEED in this process and print its record")
    p.add_argument("--json", help="also write the report (counts and defect records) to this file")
    p.add_argument("--threads", type=int, default=1, help="decoder threads per case (1 as in DataLoader workers, 0 FFmpeg's choice)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zorro-fuzz-seeds-") as d:
        seeds = build_seeds(d)
        if args.replay:
            name, kind, seed = args.replay.split(":")
            limit_memory()
            rec = run_case(Case(name, kind, int(seed)), seeds, Path(d), args.threads)
            where = rec.pop("where", "")
            print(json.dumps(rec, indent=1))
            print(where)
            return 0
        cases = make_cases(sorted(seeds), args.cases, args.seed)
        runner = run_case if args.threads == 1 else functools.partial(run_case, threads=args.threads)
        report = run_campaign(cases, seeds, workers=args.workers, time_limit=args.time_limit, runner=runner)
    print(report.format())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cases": report.total, "outcomes": dict(report.outcomes),
            "by_kind": {k: dict(v) for k, v in report.by_kind.items()},
            "by_seed": {k: dict(v) for k, v in report.by_seed.items()},
            "time_per_case_s": {"max": max(report.times, default=0.0),
                                "p99": float(np.percentile(report.times, 99)) if report.times else 0.0},
            "wall_s": report.wall, "slowest": report.slowest, "defects": report.defects,
        }, indent=1))
    return 1 if report.defects else 0


if __name__ == "__main__":
    sys.exit(main())
