"""Decode media files once into prepared shards (``zorro prepare``).

:func:`prepare_shards` decodes every :class:`PrepareSource` with the library decoder
(:class:`zorro.data.MediaReader`, the same settings as :func:`zorro.data.read_clip`) in a pool
of worker processes and writes tar shards in the WebDataset layout with a byte-offset index
each, then ``dataset.json`` (layout: :mod:`zorro.data.shards.format`).

Guarantees:

* **Counts add up**: every source is either written (one sample per stored window) or listed
  in ``unreadable`` with the decoder's reason; ``counts["sources"] == counts["written"] +
  counts["unreadable"] + counts["missing"]``. A window of a written source that decodes to
  nothing is listed in ``skipped_windows``.
* **Deterministic**: samples go to shards in source order (then window order); a shard closes
  at the first source boundary where it holds ``samples_per_shard`` samples or
  ``shard_bytes`` bytes. The same sources and settings give byte-identical shards.
* **Atomic, restartable**: each shard is written under a temporary name, fsynced and renamed,
  then its index the same way (the index marks the shard finished); ``dataset.json`` comes
  last. A run killed at any point (SIGKILL included) and started again with the same sources
  and settings keeps the finished shards without decoding their sources again, removes
  temporary and unfinished files, and finishes the job. Different settings or sources in a
  folder that already holds shards raise ValueError naming the differences.
"""

from __future__ import annotations

import collections
import contextlib
import concurrent.futures
import concurrent.futures.process
import hashlib
import json
import logging
import math
import multiprocessing
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from zorro.data import DecodeError, MediaReader
from zorro.data.shards.format import (
    AUDIO_SUFFIXES,
    DATASET_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    MAX_FRAMES,
    encode_jpeg,
    index_name,
    read_index,
    sample_key,
    shard_name,
    write_json_atomic,
)
from zorro.data.shards.writer import ShardWriter, sample_members, tmp_name
from zorro.data.transforms import CropBox

__all__ = ["PrepareSource", "PrepareSettings", "prepare_shards", "parse_window"]

logger = logging.getLogger(__name__)

#: test hook: seconds to sleep after each sample is written (lets tests kill a run mid-shard)
TEST_PAUSE_ENV = "ZORRO_PREPARE_TEST_PAUSE"
_SHARD_FILE = re.compile(r"^shard-(\d{6})\.(tar|index\.json)(\.tmp)?$")


@dataclass(frozen=True)
class PrepareSource:
    """One media file to prepare.

    Attributes:
        path: the media file.
        labels: class names (exactly one unless ``multi_label``; may be empty when
            ``multi_label``).
        start, end: optional segment of the file (s, container timeline): windows are placed
            inside it (``window="manifest"``: the window *is* it).
        meta: JSON-serialisable annotation fields stored in each sample's JSON (``meta``).
    """

    path: str
    labels: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Any, meta: Mapping[str, Any] | None = None) -> "PrepareSource":
        """From a :class:`zorro.data.ManifestEntry` (or anything with ``path``, ``labels``,
        ``start``, ``end``)."""
        return cls(str(entry.path), tuple(entry.labels), entry.start, entry.end, dict(meta or {}))


@dataclass(frozen=True)
class PrepareSettings:
    """Every setting that shapes the stored samples (recorded in ``dataset.json``).

    Attributes:
        window: ``"centre"`` (one window of ``duration`` centred in the file or in its
            ``start``/``end`` segment), ``"even:N"`` (N windows evenly spaced over it, first
            at the start and last at the end; fewer when the file is too short for N
            distinct ones) or ``"manifest"`` (the window is the source's ``[start, end)``;
            missing ``start`` = the file's start, missing ``end`` = ``start + duration``).
        duration: stored window length (s). Longer than the training clip leaves room for
            temporal offsets at training time.
        num_frames: frames stored per window (frame ``i`` at ``start + (i + 0.5) *
            duration / num_frames``).
        image_size: the training crop size these shards are meant for (pixels);
            ``store_size`` must be at least this.
        store_size: short side of the stored frames (pixels); None = ``round(image_size *
            8 / 7)`` (256 for 224), the usual margin for random-resized crops. Frames keep
            the source's aspect ratio up to :data:`MAX_ASPECT` (beyond: centre-cropped).
        sample_rate: stored audio rate (Hz).
        audio, video: store these modalities (a file lacking one still yields the other).
        audio_format: ``"wav"`` (16-bit PCM, default) or ``"flac"`` (same samples, lossless,
            smaller, slower to read).
        jpeg_quality: libjpeg quality of the stored frames (1..100).
        backend, seek_mode, fast_decode: decoder settings, see :class:`zorro.data.MediaReader`.
        samples_per_shard, shard_bytes: a shard closes at the first source boundary where it
            holds this many samples / bytes (None: no limit of that kind; at least one set).
    """

    window: str = "centre"
    duration: float = 2.0
    num_frames: int = 8
    image_size: int = 224
    store_size: int | None = None
    sample_rate: int = 16000
    audio: bool = True
    video: bool = True
    audio_format: str = "wav"
    jpeg_quality: int = 90
    backend: str = "pyav"
    seek_mode: str = "exact"
    fast_decode: bool = False
    samples_per_shard: int | None = None
    shard_bytes: int | None = 256 * 2**20

    def __post_init__(self) -> None:
        parse_window(self.window)
        if isinstance(self.duration, bool) or not isinstance(self.duration, (int, float)) or not (self.duration > 0) or not math.isfinite(self.duration):
            raise ValueError(f"duration must be a positive number of seconds, got {self.duration!r}")
        object.__setattr__(self, "duration", float(self.duration))
        for name in ("num_frames", "image_size", "sample_rate", "jpeg_quality"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.num_frames > MAX_FRAMES:
            raise ValueError(f"num_frames must be <= {MAX_FRAMES}, got {self.num_frames}")
        if self.jpeg_quality > 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.store_size is None:
            object.__setattr__(self, "store_size", int(round(self.image_size * 8 / 7)))
        if isinstance(self.store_size, bool) or not isinstance(self.store_size, (int, np.integer)) or self.store_size < self.image_size:
            raise ValueError(f"store_size must be an int >= image_size ({self.image_size}), got {self.store_size!r}")
        for name in ("audio", "video", "fast_decode"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if not (self.audio or self.video):
            raise ValueError("at least one of audio/video must be True")
        if self.audio_format not in AUDIO_SUFFIXES:
            raise ValueError(f"audio_format must be one of {AUDIO_SUFFIXES}, got {self.audio_format!r}")
        if self.backend not in ("pyav", "torchcodec", "auto"):
            raise ValueError(f"backend must be 'pyav', 'torchcodec' or 'auto', got {self.backend!r}")
        if self.seek_mode not in ("exact", "keyframe"):
            raise ValueError(f"seek_mode must be 'exact' or 'keyframe', got {self.seek_mode!r}")
        for name in ("samples_per_shard", "shard_bytes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if self.samples_per_shard is None and self.shard_bytes is None:
            raise ValueError("set samples_per_shard or shard_bytes (or both): shards need a size limit")


def parse_window(window: str) -> tuple[str, int]:
    """``"centre"`` -> ``("centre", 1)``, ``"even:N"`` -> ``("even", N)``, ``"manifest"`` ->
    ``("manifest", 1)`` (``"center"`` is accepted for ``"centre"``)."""
    if not isinstance(window, str):
        raise TypeError(f"window must be a str, got {type(window).__name__}")
    w = window.strip().lower()
    if w in ("centre", "center"):
        return "centre", 1
    if w == "manifest":
        return "manifest", 1
    m = re.fullmatch(r"even:(\d+)", w)
    if m and int(m.group(1)) >= 1:
        return "even", int(m.group(1))
    raise ValueError(f"window must be 'centre', 'even:N' (N >= 1) or 'manifest', got {window!r}")


# -- one source (runs in worker processes) -------------------------------------------------
def _windows(src: PrepareSource, info_start: float, info_end: float | None, s: PrepareSettings) -> list[tuple[float, float]]:
    """``[(start, duration), ...]`` for one file (s)."""
    kind, n = parse_window(s.window)
    if kind == "manifest":
        start = info_start if src.start is None else float(src.start)
        dur = s.duration if src.end is None else float(src.end) - start
        if not dur > 0:
            raise DecodeError(src.path, f"manifest window [{start}, {src.end}) is empty")
        return [(start, dur)]
    lo = info_start if src.start is None else max(info_start, float(src.start))
    hi = info_end if src.end is None else (float(src.end) if info_end is None else min(info_end, float(src.end)))
    if hi is None or hi < lo:
        hi = lo + s.duration
    slack = max(0.0, hi - lo - s.duration)
    if kind == "centre" or n == 1:
        return [(lo + slack / 2.0, s.duration)]
    starts: list[float] = []
    for j in range(n):
        t = lo + slack * j / (n - 1)
        if not starts or t - starts[-1] > 1e-3:  # a short file: no duplicate windows
            starts.append(t)
    return [(t, s.duration) for t in starts]


#: stored frames are at most this elongated; wider (or taller) pictures are centre-cropped
MAX_ASPECT = 3.0


def _source_box(width: int, height: int) -> CropBox:
    """The part of a ``width`` × ``height`` picture that is stored (px): all of it, or its
    centre when its aspect ratio exceeds :data:`MAX_ASPECT`."""
    w, h = float(width), float(height)
    if w > MAX_ASPECT * h:
        return CropBox((w - MAX_ASPECT * h) / 2.0, 0.0, MAX_ASPECT * h, h)
    if h > MAX_ASPECT * w:
        return CropBox(0.0, (h - MAX_ASPECT * w) / 2.0, w, MAX_ASPECT * w)
    return CropBox(0.0, 0.0, w, h)


def _stored_size(width: float, height: float, short: int) -> tuple[int, int]:
    """``(w, h)`` of stored frames for a ``width`` × ``height`` source box: short side
    ``short``, the box's aspect ratio."""
    if width <= height:
        return short, max(short, int(round(height * short / width)))
    return max(short, int(round(width * short / height))), short


def _frames_to_jpeg(video: Any, out_w: int, out_h: int, quality: int) -> list[bytes]:
    """``(3, T, L, L)`` float [0, 1] frames (L = long side, short axis stretched) -> T JPEGs
    of ``out_w`` × ``out_h``: the short axis is resized in uint8 with antialiased bilinear
    interpolation (torch's vectorised uint8 path: the same filter as Pillow's BILINEAR to
    ±1 grey level, ~15x faster on 8 frames of 455x455)."""
    import torch  # noqa: PLC0415

    # the decoder's floats are uint8 / 255: + 0.5 and truncation recover the bytes exactly
    # (numpy: ~10x faster than torch's float -> uint8 cast here)
    u8 = (video.numpy() * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)  # (3, T, L, L)
    frames = torch.from_numpy(u8).permute(1, 0, 2, 3)  # (T, 3, L, L)
    if frames.shape[-1] != out_w or frames.shape[-2] != out_h:
        frames = torch.nn.functional.interpolate(
            frames.contiguous(memory_format=torch.channels_last), size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False
        )
    arr = np.ascontiguousarray(frames.permute(0, 2, 3, 1).numpy())  # (T, H, W, 3)
    return [encode_jpeg(frame, quality) for frame in arr]


def _prepare_source(job: tuple[int, PrepareSource, PrepareSettings, dict[str, int]]) -> dict[str, Any]:
    """Decode and encode every window of one source. Returns ``{"index", "samples":
    [(info, members)], "skipped": [{window, start, reason}]}`` or ``{"index", "unreadable":
    reason}``. Only :class:`~zorro.data.DecodeError` counts as unreadable; anything else is
    re-raised naming the file."""
    i, src, s, vocab = job
    try:
        return _decode_source(i, src, s, vocab)
    except DecodeError as exc:
        return {"index": i, "unreadable": exc.reason}
    except Exception as exc:  # a bug or an unexpected library error: name the file
        raise RuntimeError(f"preparing {src.path!r} failed unexpectedly: {type(exc).__name__}: {exc}") from exc


def _decode_source(i: int, src: PrepareSource, s: PrepareSettings, vocab: dict[str, int]) -> dict[str, Any]:
    threads = 1 if multiprocessing.parent_process() is not None else 0
    samples = []
    skipped = []
    with MediaReader(src.path, backend=s.backend, threads=threads, seek_mode=s.seek_mode, fast_decode=s.fast_decode) as reader:
        info = reader.info
        want_audio = s.audio and info.has_audio
        want_video = s.video and info.has_video and bool(info.width) and bool(info.height)
        if not (want_audio or want_video):
            raise DecodeError(src.path, f"no stream to store (file has audio={info.has_audio}, video={info.has_video}; settings audio={s.audio}, video={s.video})")
        if want_video:
            box = _source_box(info.width, info.height)
            out_w, out_h = _stored_size(box.w, box.h, s.store_size)
            long_side = max(out_w, out_h)
        reasons = []
        for w, (start, dur) in enumerate(_windows(src, info.start, info.end, s)):
            try:
                clip = reader.read(
                    start=start,
                    duration=dur,
                    num_frames=s.num_frames,
                    image_size=long_side if want_video else s.store_size,
                    sample_rate=s.sample_rate,
                    audio=want_audio,
                    video=want_video,
                    crop=box if want_video else "center",
                )
            except DecodeError as exc:
                skipped.append({"window": w, "start": start, "reason": exc.reason})
                reasons.append(exc.reason)
                continue
            jpgs = None
            width = height = 0
            if clip.has_video:
                jpgs = _frames_to_jpeg(clip.video, out_w, out_h, s.jpeg_quality)
                width, height = out_w, out_h
            audio = clip.audio.numpy() if clip.has_audio else None
            sample_json = {
                "path": src.path,
                "start": float(clip.start),
                "end": float(clip.start + dur),
                "labels": list(src.labels),
                "label_ids": [vocab[lab] for lab in src.labels],
                "has_audio": bool(clip.has_audio),
                "has_video": bool(clip.has_video),
                "padded": bool(clip.padded),
                "audio_valid_samples": int(clip.audio_valid_samples) if clip.has_audio else 0,
                "sample_rate": int(s.sample_rate),
                "fps": s.num_frames / dur,
                "num_frames": len(jpgs) if jpgs else 0,
                "width": width,
                "height": height,
                "source": i,
                "window": w,
                "meta": dict(src.meta),
            }
            members = sample_members(sample_json, audio, jpgs, sample_rate=s.sample_rate, audio_format=s.audio_format)
            samples.append(members)
    if not samples:
        raise DecodeError(src.path, reasons[0] if reasons else "no window decodes")
    return {"index": i, "samples": samples, "skipped": skipped}


def _init_worker() -> None:
    import signal  # noqa: PLC0415

    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the main process stops the run and shuts the
    # pool down; workers ignoring it avoids a traceback from each of them
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- bookkeeping ---------------------------------------------------------------------------
def _check_sources(sources: Sequence[Any], labels: Sequence[str], multi_label: bool) -> tuple[list[PrepareSource], dict[str, int]]:
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise TypeError("labels must be a sequence of class-name strings (the vocabulary in class-id order)")
    vocab = {name: k for k, name in enumerate(labels)}
    if len(vocab) != len(labels):
        raise ValueError("labels has duplicate names")
    out = []
    for k, src in enumerate(sources):
        if not isinstance(src, PrepareSource):
            if hasattr(src, "path") and hasattr(src, "labels"):
                src = PrepareSource.from_entry(src, getattr(src, "meta", None))
            else:
                raise TypeError(f"sources[{k}] must be a PrepareSource, got {type(src).__name__}")
        if isinstance(src.labels, str):
            raise TypeError(f"sources[{k}].labels must be a tuple of names, got the string {src.labels!r}")
        labs = tuple(str(x) for x in src.labels)
        for lab in labs:
            if lab not in vocab:
                raise ValueError(f"sources[{k}] ({src.path}) has label {lab!r}, which is not in labels")
        if not multi_label and len(labs) != 1:
            raise ValueError(f"sources[{k}] ({src.path}) has {len(labs)} labels; single-label data needs exactly one (or multi_label=True)")
        for name in ("start", "end"):
            v = getattr(src, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"sources[{k}].{name} must be a finite number of seconds or None, got {v!r}")
        if src.start is not None and src.end is not None and src.end <= src.start:
            raise ValueError(f"sources[{k}] ({src.path}) has end {src.end} <= start {src.start}")
        try:
            meta = json.loads(json.dumps(dict(src.meta), sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sources[{k}].meta must be JSON-serialisable ({exc})") from None
        out.append(PrepareSource(os.fspath(src.path), labs, None if src.start is None else float(src.start), None if src.end is None else float(src.end), meta))
    return out, vocab


def _settings_dict(s: PrepareSettings) -> dict[str, Any]:
    d = asdict(s)
    d["window"] = "{}:{}".format(*parse_window(s.window)) if parse_window(s.window)[0] == "even" else parse_window(s.window)[0]
    d["frame_resize"] = "swscale bilinear to the long side, then antialiased bilinear (uint8) on the short axis"
    d["jpeg_encoder"] = "pillow"
    d["max_aspect"] = MAX_ASPECT
    return d


def _fingerprint(sources: list[PrepareSource], settings: dict[str, Any], labels: Sequence[str], multi_label: bool) -> str:
    h = hashlib.sha256()
    head = {"format_version": FORMAT_VERSION, "settings": settings, "labels": list(labels), "multi_label": bool(multi_label)}
    h.update(json.dumps(head, sort_keys=True).encode())
    for src in sources:
        h.update(json.dumps([src.path, list(src.labels), src.start, src.end, src.meta], sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import av  # noqa: PLC0415
    import PIL  # noqa: PLC0415
    import torch  # noqa: PLC0415

    import zorro  # noqa: PLC0415

    return {
        "zorro": zorro.__version__,
        "torch": torch.__version__,
        "av": av.__version__,
        "ffmpeg": ".".join(str(x) for x in av.library_versions.get("libavcodec", ())),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }


def _describe_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(diffs) if diffs else "the sources (paths, labels, segments or meta) or the label vocabulary differ"


def _refuse_foreign_shards(out: Path) -> None:
    """Raise ValueError if ``out`` (where no ``zorro prepare`` ran) holds files named like
    shards: they are someone else's, and a run would replace or remove them."""
    foreign = sorted(p.name for p in out.iterdir() if _SHARD_FILE.match(p.name))
    if foreign:
        raise ValueError(
            f"{str(out)!r} holds files named like shards ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) "
            f"that zorro prepare did not write; use an empty or new --out folder"
        )


def _scan_finished(out: Path, fingerprint: str, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Finished shards from an earlier run with the same fingerprint (a contiguous prefix
    0..k-1); removes temporary files and every later/unfinished shard file. Raises
    ValueError when the folder holds shards of other settings or sources."""
    for p in out.iterdir():
        m = _SHARD_FILE.match(p.name)
        if (m and m.group(3)) or p.name == tmp_name(DATASET_JSON):
            logger.info("removing unfinished %s", p.name)
            p.unlink()
    existing = out / DATASET_JSON
    if existing.is_file():
        try:
            old = json.loads(existing.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") not in (None, fingerprint):
            raise ValueError(
                f"{str(out)!r} holds a dataset prepared with other settings or sources "
                f"({_describe_difference(old.get('settings') or {}, settings)}); use another --out folder or remove it"
            )
    finished: list[dict[str, Any]] = []
    next_source = 0
    n = 0
    while True:
        ipath, tpath = out / index_name(n), out / shard_name(n)
        if not ipath.is_file():
            break
        try:
            idx = read_index(ipath)
        except ValueError:
            break
        if idx.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{str(out)!r} holds shards prepared with other settings or sources "
                f"({_describe_difference(idx.get('settings') or {}, settings)}); use another --out folder or remove them"
            )
        if not tpath.is_file() or tpath.stat().st_size != idx.get("bytes") or idx.get("source_start") != next_source:
            break
        finished.append(_summary(idx))
        next_source = int(idx["source_end"])
        n += 1
    # everything after the finished prefix is from an interrupted run: remove it
    for p in sorted(out.iterdir()):
        m = _SHARD_FILE.match(p.name)
        if m and int(m.group(1)) >= n:
            logger.info("removing unfinished shard file %s", p.name)
            p.unlink()
    return finished


LOCK_FILE = ".zorro-prepare.lock"


@contextlib.contextmanager
def _folder_lock(out: Path):
    """Hold an exclusive ``flock`` on ``OUT/.zorro-prepare.lock`` (released by the kernel
    when the process dies, so a killed run never blocks its restart). Raises ValueError when
    another process holds it."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # not POSIX: no protection against two concurrent runs
        yield
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another zorro prepare is writing to {str(out)!r}; wait for it or use another --out folder") from None
        yield
    finally:
        os.close(fd)


def _summary(index: Mapping[str, Any]) -> dict[str, Any]:
    """An index without its per-sample entries (what the run keeps in memory per shard)."""
    return {k: v for k, v in index.items() if k != "samples"}


def _finished_tail(out: Path, fingerprint: str, finished: list[dict[str, Any]], resume: int) -> list[dict[str, Any]] | None:
    """When ``dataset.json`` of a finished run with this fingerprint lists exactly the
    finished shards, the unreadable sources after the last shard (they are in no index);
    else None."""
    p = out / DATASET_JSON
    if not p.is_file():
        return None
    try:
        old = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if old.get("fingerprint") != fingerprint or [s.get("name") for s in old.get("shards", [])] != [ix["shard"] for ix in finished]:
        return None
    tail = [u for u in old.get("unreadable", []) if isinstance(u.get("source"), int) and u["source"] >= resume]
    if not all({"path", "reason"} <= set(u) for u in tail):
        return None
    return [{"source": u["source"], "path": u["path"], "reason": u["reason"]} for u in tail]


def _run_jobs(jobs: Iterable[tuple], workers: int):
    """Yield ``_prepare_source`` results in job order, at most ``4 * workers`` in flight.

    A worker process that dies (crash, out-of-memory kill) raises RuntimeError naming the
    files in flight, instead of hanging; finished shards stay and a rerun resumes."""
    if workers <= 1:
        for job in jobs:
            yield _prepare_source(job)
        return
    # fork, like DataLoader workers: no re-import of the caller's __main__, fast start
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
    try:
        pending: collections.deque = collections.deque()
        it = iter(jobs)
        done = False
        while True:
            while not done and len(pending) < 4 * workers:
                try:
                    job = next(it)
                except StopIteration:
                    done = True
                    break
                pending.append((job[1].path, pool.submit(_prepare_source, job)))
            if not pending:
                break
            path, fut = pending.popleft()
            try:
                yield fut.result()
            except concurrent.futures.process.BrokenProcessPool as exc:
                in_flight = [path] + [p for p, _ in pending]
                raise RuntimeError(
                    f"a decoding worker process died (crash or out-of-memory kill) while preparing one of "
                    f"{in_flight[:8]}{' ...' if len(in_flight) > 8 else ''}; finished shards are kept, rerun to resume"
                ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prepare_shards(
    sources: Sequence[PrepareSource],
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str],
    multi_label: bool = False,
    missing: Sequence[Any] = (),
    extra_info: Mapping[str, Any] | None = None,
    settings: PrepareSettings | None = None,
    workers: int | None = None,
    **setting_overrides: Any,
) -> dict[str, Any]:
    """Decode every source once and write shards + indexes + ``dataset.json`` to ``out_dir``.

    Args:
        sources: the files (:class:`PrepareSource`; :class:`zorro.data.ManifestEntry` is
            accepted too), in the order their samples are stored.
        out_dir: output folder (created). Holding shards of an interrupted run with the same
            sources and settings, the run resumes after them (see module doc).
        labels: the vocabulary in class-id order; every source label must be in it.
        multi_label: sources may have any number of labels (else exactly one).
        missing: annotated items without a media file (JSON-serialisable: e.g. dicts with
            the item's id and expected path); stored and counted in ``dataset.json``.
        extra_info: JSON-serialisable dict stored as ``dataset.json["extra"]``.
        settings: a :class:`PrepareSettings`; ``setting_overrides`` (its field names, e.g.
            ``window="even:3"``, ``duration=10.0``) replace single fields.
        workers: decoding processes; None = all cores (``os.cpu_count()``), 1 = in this
            process.

    Returns:
        The ``dataset.json`` contents (see :mod:`zorro.data.shards.format`).

    Raises:
        ValueError / TypeError: bad arguments, or ``out_dir`` holds shards made with other
            settings or sources.
        RuntimeError: an unexpected (non-decode) error while preparing a file; the message
            names the file. Finished shards stay; rerunning resumes.
    """
    s = settings if settings is not None else PrepareSettings()
    if not isinstance(s, PrepareSettings):
        raise TypeError(f"settings must be a PrepareSettings or None, got {type(s).__name__}")
    if setting_overrides:
        known = {f.name for f in fields(PrepareSettings)}
        unknown = sorted(set(setting_overrides) - known)
        if unknown:
            raise TypeError(f"unknown prepare settings {unknown}; known: {sorted(known)}")
        s = PrepareSettings(**{**asdict(s), **setting_overrides})
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    srcs, vocab = _check_sources(list(sources), list(labels), bool(multi_label))
    try:
        missing_list = json.loads(json.dumps(list(missing)))
        extra = json.loads(json.dumps(dict(extra_info or {})))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"missing and extra_info must be JSON-serialisable ({exc})") from None
    settings_d = _settings_dict(s)
    fingerprint = _fingerprint(srcs, settings_d, labels, bool(multi_label))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a folder zorro prepare worked in before has its lock file (or at least dataset.json)
    if not ((out / LOCK_FILE).exists() or (out / DATASET_JSON).exists()):
        _refuse_foreign_shards(out)  # before the lock file marks the folder as ours

    with _folder_lock(out):
        finished = _scan_finished(out, fingerprint, settings_d)
        resume = int(finished[-1]["source_end"]) if finished else 0
        next_sample = sum(int(ix["num_samples"]) for ix in finished)
        if finished:
            logger.info("resuming: %d finished shard(s) hold sources [0, %d) (%d samples); decoding the %d left", len(finished), resume, next_sample, len(srcs) - resume)
        tail_unreadable = _finished_tail(out, fingerprint, finished, resume)
        if tail_unreadable is not None:  # an earlier run finished: its last sources were all unreadable
            resume = len(srcs)
        elif resume < len(srcs) and (out / DATASET_JSON).exists():
            (out / DATASET_JSON).unlink()

        pause = float(os.environ.get(TEST_PAUSE_ENV, "0") or 0)
        shards = [dict(ix) for ix in finished]
        pending_unreadable: list[dict[str, Any]] = tail_unreadable or []  # since the last committed shard
        pending_skipped: list[dict[str, Any]] = []
        writer: ShardWriter | None = None
        shard_start = resume
        jobs = ((i, srcs[i], s, vocab) for i in range(resume, len(srcs)))
        t0 = time.monotonic()
        done_sources = 0

        def commit_shard(source_end: int) -> None:
            """Finish the open shard, which holds sources [shard_start, source_end), with what
            a restart needs in its index, and add its summary to ``shards``."""
            writer.extra_index = {
                "source_start": shard_start,
                "source_end": source_end,
                "first_sample": next_sample - writer.num_samples,
                "unreadable": pending_unreadable,
                "skipped_windows": pending_skipped,
                "fingerprint": fingerprint,
                "settings": settings_d,
            }
            shards.append(_summary(writer.commit()))

        try:
            for res in _run_jobs(jobs, min(workers, max(1, len(srcs) - resume))):
                i = res["index"]
                done_sources += 1
                if "unreadable" in res:
                    pending_unreadable.append({"source": i, "path": srcs[i].path, "reason": res["unreadable"]})
                    logger.warning("unreadable: %s (%s)", srcs[i].path, res["unreadable"])
                else:
                    if writer is None:
                        writer = ShardWriter(out, len(shards))
                    for members in res["samples"]:
                        writer.add(sample_key(next_sample), members)
                        next_sample += 1
                        if pause:
                            time.sleep(pause)
                    for sk in res["skipped"]:
                        pending_skipped.append({"source": i, "path": srcs[i].path, **sk})
                full = writer is not None and (
                    (s.samples_per_shard is not None and writer.num_samples >= s.samples_per_shard)
                    or (s.shard_bytes is not None and writer.bytes_written >= s.shard_bytes)
                )
                if full:
                    commit_shard(i + 1)
                    rate = done_sources / max(time.monotonic() - t0, 1e-9)
                    logger.info(
                        "wrote %s (%d samples, sources [%d, %d) of %d, %.2f sources/s, ~%.0f min left)",
                        writer.name, writer.num_samples, shard_start, i + 1, len(srcs), rate, (len(srcs) - i - 1) / rate / 60,
                    )
                    writer, shard_start, pending_unreadable, pending_skipped = None, i + 1, [], []
                elif writer is None and not pending_unreadable and not pending_skipped:
                    shard_start = i + 1
            if writer is not None:
                commit_shard(len(srcs))
                logger.info("wrote %s (%d samples)", writer.name, writer.num_samples)
                writer, pending_unreadable, pending_skipped = None, [], []
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

        unreadable = [u for ix in shards for u in ix.get("unreadable", [])] + pending_unreadable
        skipped_windows = [u for ix in shards for u in ix.get("skipped_windows", [])] + pending_skipped
        num_samples = sum(int(ix["num_samples"]) for ix in shards)
        written = len(srcs) - len(unreadable)
        desc = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "num_samples": num_samples,
            "labels": list(labels),
            "multi_label": bool(multi_label),
            "unreadable": [{"path": u["path"], "reason": u["reason"], "source": u["source"]} for u in unreadable],
            "missing": missing_list,
            "skipped_windows": [{"path": u["path"], "window": u["window"], "start": u["start"], "reason": u["reason"]} for u in skipped_windows],
            "shards": [{"name": ix["shard"], "index": index_name(k), "num_samples": int(ix["num_samples"]), "bytes": int(ix["bytes"])} for k, ix in enumerate(shards)],
            "counts": {
                "sources": len(srcs) + len(missing_list),
                "written": written,
                "unreadable": len(unreadable),
                "missing": len(missing_list),
                "samples": num_samples,
                "skipped_windows": len(skipped_windows),
            },
            "settings": settings_d,
            "versions": _versions(),
            "fingerprint": fingerprint,
            "extra": extra,
        }
        write_json_atomic(out / DATASET_JSON, desc)
        if unreadable:
            logger.warning("%d of %d source(s) unreadable (listed in %s)", len(unreadable), len(srcs), out / DATASET_JSON)
        logger.info("prepared %d samples from %d source(s) into %d shard(s) in %s", num_samples, written, len(shards), out)
        return desc
