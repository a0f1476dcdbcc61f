"""Decode media files once into prepared shards (``zorro prepare``).

:func:`prepare_shards` decodes every source (a :class:`PrepareSource` list or a compact
:class:`~zorro.data.sources.SourceTable`) with the library decoder
(:class:`zorro.data.MediaReader`, the same settings as :func:`zorro.data.read_clip`) in a pool
of worker processes and writes tar shards in the WebDataset layout with a byte-offset index
each, then ``dataset.json`` and its lists (layout: :mod:`zorro.data.shards.format`).

Guarantees:

* **Counts add up**: every source is either written (one sample per stored window) or listed
  in ``unreadable.jsonl`` with the decoder's reason; ``counts["sources"] == counts["written"] +
  counts["unreadable"] + counts["missing"]``. A window of a written source that decodes to
  nothing is listed in ``skipped_windows.jsonl``. ``dataset.json`` itself holds only counts,
  so it stays small however many clips there are.
* **Deterministic**: samples go to shards in source order (then window order); a shard closes
  at the first source boundary where it holds ``samples_per_shard`` samples or
  ``shard_bytes`` bytes. The same sources and settings give byte-identical shards.
* **Atomic, restartable**: each shard is written under a temporary name, fsynced and renamed,
  then its index the same way (the index marks the shard finished); ``dataset.json`` comes
  last. A run killed at any point (SIGKILL included) and started again with the same sources
  and settings keeps the finished shards without decoding their sources again, removes
  temporary and unfinished files, and finishes the job. Different settings or sources in a
  folder that already holds shards raise ValueError naming the differences.
* **Parts**: with ``part=K, num_parts=N`` a run prepares a contiguous slice of the sources
  (:func:`part_range`: deterministic, disjoint, balanced in expected decoding work) into
  shards named after the part, so N machines can write into one folder at once; each part
  restarts like a whole run, records what it did in ``OUT/parts/``, and the last part to
  finish (or ``zorro prepare merge``, :func:`zorro.data.accounting.merge_parts`) writes the
  one ``dataset.json``.
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
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from zorro.data.accounting import (
    PARTS_DIR,
    ListSource,
    count_list,
    describe,
    merge_parts,
    part_list_name,
    read_part_record,
    write_list,
    write_part_record,
)
from zorro.data.shards.format import (
    AUDIO_SUFFIXES,
    DATASET_JSON,
    FORMAT_VERSION,
    LIST_FILES,
    MAX_FRAMES,
    MAX_PARTS,
    encode_jpeg,
    index_name,
    iter_list,
    parse_shard_file,
    read_index_head,
    read_json_or_none,
    sample_key,
    shard_name,
    write_json_atomic,
)
from zorro.data.shards.writer import ShardWriter, sample_members, tmp_name
from zorro.data.sources import PrepareSource, SourceTable

if TYPE_CHECKING:
    from zorro.data.transforms import CropBox

__all__ = ["PrepareSource", "PrepareSettings", "prepare_shards", "parse_window", "part_range", "expected_work", "settings_record", "LOCK_FILE"]

logger = logging.getLogger(__name__)

#: test hook: seconds to sleep after each sample is written (lets tests kill a run mid-shard)
TEST_PAUSE_ENV = "ZORRO_PREPARE_TEST_PAUSE"


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
        modalities: the extra modalities to store, ``name -> kind`` (``"text"``,
            ``"sequence"``; a mapping or ``(name, kind)`` pairs, kept as pairs): each
            source's value (its ``extra``) becomes the member ``<name>.txt`` (UTF-8) or
            ``<name>.npy`` (float32 ``(T, D)``) of every sample of the source (see
            :mod:`zorro.data.modalities`). A source without a value gets no member; a
            sequence file that cannot be read makes the source unreadable. Empty: none
            (and nothing about them is recorded, so older folders keep their settings).
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
    modalities: Any = ()

    def __post_init__(self) -> None:
        from zorro.data.modalities import check_extra  # noqa: PLC0415

        pairs = self.modalities.items() if isinstance(self.modalities, Mapping) else self.modalities
        try:
            pairs = tuple((str(n), str(k)) for n, k in pairs)
        except (TypeError, ValueError):
            raise TypeError(f"modalities must be a mapping name -> kind or (name, kind) pairs, got {self.modalities!r}") from None
        object.__setattr__(self, "modalities", tuple(check_extra(dict(pairs)).items()))
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
            from zorro.data.decode import DecodeError  # noqa: PLC0415

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


def _source_box(width: int, height: int) -> "CropBox":
    """The part of a ``width`` × ``height`` picture that is stored (px): all of it, or its
    centre when its aspect ratio exceeds :data:`MAX_ASPECT`."""
    from zorro.data.transforms import CropBox  # noqa: PLC0415

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
    from zorro.data.decode import DecodeError  # noqa: PLC0415  (the decoders load in the processes that decode)

    i, src, s, vocab = job
    try:
        return _decode_source(i, src, s, vocab)
    except DecodeError as exc:
        return {"index": i, "unreadable": exc.reason}
    except Exception as exc:  # a bug or an unexpected library error: name the file
        raise RuntimeError(f"preparing {src.path!r} failed unexpectedly: {type(exc).__name__}: {exc}") from exc


def _decode_source(i: int, src: PrepareSource, s: PrepareSettings, vocab: dict[str, int]) -> dict[str, Any]:
    from zorro.data.decode import DecodeError, MediaReader  # noqa: PLC0415

    threads = 1 if multiprocessing.parent_process() is not None else 0
    samples = []
    skipped = []
    extra_members = _extra_members(src, s)
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
            samples.append(members + extra_members)
    if not samples:
        raise DecodeError(src.path, reasons[0] if reasons else "no window decodes")
    return {"index": i, "samples": samples, "skipped": skipped}


def _extra_members(src: PrepareSource, s: PrepareSettings) -> list[tuple[str, bytes]]:
    """The members of the source's extra modalities (``s.modalities``) that it has a value
    for: ``(<name>.txt, UTF-8)`` and ``(<name>.npy, float32 array)``. A sequence file that
    cannot be read raises :class:`~zorro.data.DecodeError` (the source is unreadable)."""
    from zorro.data.decode import DecodeError  # noqa: PLC0415
    from zorro.data.modalities import encode_sequence, load_sequence, member_suffix  # noqa: PLC0415

    out = []
    for name, kind in s.modalities:
        value = (src.extra or {}).get(name)
        if value is None or not str(value).strip():
            continue
        if kind == "text":
            data = str(value).encode("utf-8")
        else:
            try:
                data = encode_sequence(load_sequence(value))
            except ValueError as exc:
                raise DecodeError(src.path, f"{name}: {exc}") from None
        out.append((member_suffix(name, kind), data))
    return out


def _init_worker() -> None:
    import signal  # noqa: PLC0415

    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the main process stops the run and shuts the
    # pool down; workers ignoring it avoids a traceback from each of them
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- bookkeeping ---------------------------------------------------------------------------
def settings_record(s: PrepareSettings) -> dict[str, Any]:
    """The ``settings`` recorded in ``dataset.json`` and the indexes: the fields of ``s``
    (``window`` normalised) plus how frames are resized and encoded."""
    d = asdict(s)
    if s.modalities:
        d["modalities"] = dict(s.modalities)
    else:
        del d["modalities"]
    d["window"] = "{}:{}".format(*parse_window(s.window)) if parse_window(s.window)[0] == "even" else parse_window(s.window)[0]
    d["frame_resize"] = "swscale bilinear to the long side, then antialiased bilinear (uint8) on the short axis"
    d["jpeg_encoder"] = "pillow"
    d["max_aspect"] = MAX_ASPECT
    return d


def _fingerprint(table: SourceTable, settings: dict[str, Any], index_fields: Sequence[str]) -> str:
    """sha256 over the format version, settings, vocabulary, index fields and every source's
    canonical text (:meth:`SourceTable.canonical`)."""
    h = hashlib.sha256()
    head = {"format_version": FORMAT_VERSION, "settings": settings, "labels": list(table.labels), "multi_label": table.multi_label,
            "index_fields": list(index_fields)}
    h.update(json.dumps(head, sort_keys=True).encode())
    for i in range(len(table)):
        h.update(table.canonical(i).encode())
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


def expected_work(table: SourceTable, settings: PrepareSettings) -> np.ndarray:
    """Seconds of media each source is expected to cost to decode: ``(len(table),)`` float64.

    ``window="manifest"``: the source's ``end - start`` where both are given, else
    ``duration``; ``"centre"``: ``duration``; ``"even:N"``: ``N * duration`` (the file's
    length is not known before opening it, so every source of a job counts alike)."""
    kind, n = parse_window(settings.window)
    work = np.full(len(table), settings.duration * (n if kind == "even" else 1), dtype=np.float64)
    if kind == "manifest" and len(table):
        start = np.frombuffer(table._start, dtype=np.float64)
        end = np.frombuffer(table._end, dtype=np.float64)
        known = ~(np.isnan(start) | np.isnan(end))
        work[known] = np.maximum(end[known] - start[known], 1e-3)
    return work


def part_range(table: SourceTable, part: int, num_parts: int, settings: PrepareSettings) -> tuple[int, int]:
    """The sources ``[lo, hi)`` of part ``part`` of ``num_parts``: contiguous slices in source
    order whose expected work (:func:`expected_work`) is as equal as the sources allow
    (source ``i`` goes to the part its midpoint of the cumulative work falls in). Depends
    only on the sources and the settings, so every machine computes the same slices."""
    work = expected_work(table, settings)
    if not len(work):
        return 0, 0
    cum = np.cumsum(work)
    mid = cum - work / 2.0
    total = float(cum[-1])
    lo = int(np.searchsorted(mid, part * total / num_parts, side="left"))
    hi = int(np.searchsorted(mid, (part + 1) * total / num_parts, side="left")) if part + 1 < num_parts else len(work)
    return lo, hi


def _check_parts(part: Any, num_parts: Any) -> tuple[int | None, int | None]:
    if part is None and num_parts is None:
        return None, None
    if part is None or num_parts is None:
        raise ValueError("give both part and num_parts (e.g. --part 0 --num-parts 4), or neither")
    for name, v in (("part", part), ("num_parts", num_parts)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if not 1 <= num_parts <= MAX_PARTS:
        raise ValueError(f"num_parts must be in [1, {MAX_PARTS}], got {num_parts}")
    if not 0 <= part < num_parts:
        raise ValueError(f"part must be in [0, num_parts) = [0, {num_parts}), got {part} (parts are numbered from 0)")
    return int(part), int(num_parts)


def _refuse_foreign_shards(out: Path, part: int | None) -> None:
    """Raise ValueError if ``out`` holds files named like the shards this run (or part) would
    write while no ``zorro prepare`` of it ran there: they are someone else's, and a run would
    replace or remove them. (Other parts' shards are theirs: parts run side by side.)"""
    foreign = sorted(p.name for p in out.iterdir() if (parse_shard_file(p.name) or (-1,))[0] == part)
    if foreign:
        raise ValueError(
            f"{str(out)!r} holds files named like shards ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}) "
            f"that zorro prepare did not write; use an empty or new --out folder"
        )


def _refuse_mixing(out: Path, part: int | None) -> None:
    """A folder holds one run's shards or one partitioned job's, never both."""
    names = [parse_shard_file(p.name) for p in out.iterdir()]
    if part is None and (any(n and n[0] is not None for n in names) or (out / PARTS_DIR).exists()):
        raise ValueError(f"{str(out)!r} is being prepared in parts (--part/--num-parts): run the parts, or use another --out folder")
    if part is not None and any(n and n[0] is None for n in names):
        raise ValueError(f"{str(out)!r} holds shards of a run without --part; prepare the parts into another --out folder")


def _older_format(where: str) -> ValueError:
    return ValueError(
        f"{where} was written by an older zorro (shard format 1); the folder stays readable as it is. "
        f"To prepare it again with this zorro, use a new --out folder"
    )


def _scan_finished(out: Path, fingerprint: str, settings: dict[str, Any], part: int | None, num_parts: int | None,
                   start: int) -> list[dict[str, Any]]:
    """Finished shards of this run (or part) from an earlier run with the same fingerprint (a
    contiguous prefix 0..k-1 starting at source ``start``); removes this run's temporary
    files and every later/unfinished shard file of it. Raises ValueError when the folder
    holds shards of other settings or sources."""
    for p in out.iterdir():
        parsed = parse_shard_file(p.name)
        if parsed and parsed[0] == part and parsed[3]:
            logger.info("removing unfinished %s", p.name)
            p.unlink()
        elif part is None and p.name == tmp_name(DATASET_JSON):
            p.unlink()
    existing = out / DATASET_JSON
    if existing.is_file():
        old = read_json_or_none(existing) or {}
        if old.get("format_version") == 1:
            raise _older_format(f"{str(out)!r}")
        if old.get("fingerprint") not in (None, fingerprint):
            raise ValueError(
                f"{str(out)!r} holds a dataset prepared with other settings or sources "
                f"({_describe_difference(old.get('settings') or {}, settings)}); use another --out folder or remove it"
            )
    finished: list[dict[str, Any]] = []
    next_source = start
    n = 0
    while True:
        ipath, tpath = out / index_name(n, part), out / shard_name(n, part)
        if not ipath.is_file():
            break
        try:
            idx = read_index_head(ipath)
        except ValueError:
            break
        if idx.get("format_version") == 1:
            raise _older_format(str(ipath))
        if idx.get("fingerprint") != fingerprint:
            raise ValueError(
                f"{str(out)!r} holds shards prepared with other settings or sources "
                f"({_describe_difference(idx.get('settings') or {}, settings)}); use another --out folder or remove them"
            )
        if idx.get("num_parts") != num_parts:
            raise ValueError(f"{str(out)!r} holds shards of a job in {idx.get('num_parts')} parts; this run is for {num_parts}")
        if not tpath.is_file() or tpath.stat().st_size != idx.get("bytes") or idx.get("source_start") != next_source:
            break
        finished.append(_summary(idx))
        next_source = int(idx["source_end"])
        n += 1
    # everything after the finished prefix is from an interrupted run: remove it
    for p in sorted(out.iterdir()):
        parsed = parse_shard_file(p.name)
        if parsed and parsed[0] == part and parsed[1] >= n:
            logger.info("removing unfinished shard file %s", p.name)
            p.unlink()
    return finished


LOCK_FILE = ".zorro-prepare.lock"


def _lock_name(part: int | None) -> str:
    return LOCK_FILE if part is None else f".zorro-prepare.p{part:04d}.lock"


@contextlib.contextmanager
def _folder_lock(out: Path, part: int | None = None):
    """Hold an exclusive ``flock`` on ``OUT/.zorro-prepare.lock`` (a part: on its own
    ``.zorro-prepare.pKKKK.lock``; released by the kernel when the process dies, so a killed
    run never blocks its restart). Raises ValueError when another process holds it."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # not POSIX: no protection against two concurrent runs
        yield
        return
    fd = os.open(out / _lock_name(part), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            what = "" if part is None else f" part {part}"
            raise ValueError(f"another zorro prepare{what} is writing to {str(out)!r}; wait for it or use another --out folder") from None
        yield
    finally:
        os.close(fd)


def _summary(index: Mapping[str, Any]) -> dict[str, Any]:
    """An index without its per-sample columns (what the run keeps in memory per shard)."""
    return {k: v for k, v in index.items() if k not in ("samples", "label_ids", "sample_meta")}


def _finished_tail(out: Path, fingerprint: str, finished: list[dict[str, Any]], resume: int, part: int | None) -> list[dict[str, Any]] | None:
    """When the record of a finished run (``dataset.json``, or the part's record) with this
    fingerprint lists exactly the finished shards, the unreadable sources after the last shard
    (they are in no index); else None."""
    if part is None:
        old = read_json_or_none(out / DATASET_JSON)
        if old is None or old.get("dry_run") or old.get("format_version") != FORMAT_VERSION:
            return None
        entries = lambda: iter_list(out, "unreadable")  # noqa: E731
    else:
        old = read_part_record(out, part)
        if old is None:
            return None
        path = out / PARTS_DIR / part_list_name(part, "unreadable")

        def entries() -> list[dict[str, Any]]:
            with open(path, encoding="utf-8") as fh:
                return [json.loads(line) for line in fh if line.strip()]
    if old.get("fingerprint") != fingerprint or [s.get("name") for s in old.get("shards", [])] != [ix["shard"] for ix in finished]:
        return None
    try:
        tail = [u for u in entries() if isinstance(u.get("source"), int) and u["source"] >= resume]
    except (OSError, ValueError):
        return None
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


def _share(total: int, part: int | None, num_parts: int | None) -> tuple[int, int]:
    """Entries ``[lo, hi)`` of a job-level list (missing clips, dropped rows) that part
    ``part`` carries: contiguous shares in order, so the merged list keeps the order."""
    if part is None:
        return 0, total
    return total * part // num_parts, total * (part + 1) // num_parts


def prepare_shards(
    sources: Sequence[PrepareSource] | SourceTable,
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str],
    multi_label: bool = False,
    missing: ListSource = (),
    extra_info: Mapping[str, Any] | None = None,
    settings: PrepareSettings | None = None,
    workers: int | None = None,
    dropped_rows: ListSource = (),
    annotation_counts: Mapping[str, int] | None = None,
    index_fields: Sequence[str] = (),
    part: int | None = None,
    num_parts: int | None = None,
    **setting_overrides: Any,
) -> dict[str, Any]:
    """Decode every source once and write shards + indexes + ``dataset.json`` to ``out_dir``.

    Args:
        sources: the files (:class:`PrepareSource`; :class:`zorro.data.ManifestEntry` is
            accepted too; or a :class:`~zorro.data.sources.SourceTable` with this
            vocabulary), in the order their samples are stored.
        out_dir: output folder (created). Holding shards of an interrupted run with the same
            sources and settings, the run resumes after them (see module doc).
        labels: the vocabulary in class-id order; every source label must be in it.
        multi_label: sources may have any number of labels (else exactly one).
        missing: annotated items without a media file: JSON-serialisable dicts (e.g. the
            item's id and expected path), or a :class:`pathlib.Path` of a JSON-lines file of
            them (streamed); written to ``missing.jsonl`` and counted.
        extra_info: JSON-serialisable dict stored as ``dataset.json["extra"]``.
        settings: a :class:`PrepareSettings`; ``setting_overrides`` (its field names, e.g.
            ``window="even:3"``, ``duration=10.0``) replace single fields.
        workers: decoding processes; None = all cores (``os.cpu_count()``), 1 = in this
            process.
        dropped_rows: annotation rows left out (as ``missing``); written to
            ``dropped_rows.jsonl``.
        annotation_counts: further counts for ``dataset.json`` (``rows``, ``annotated``,
            ``filtered_rows``, ...; see :mod:`zorro.data.shards.format`).
        index_fields: ``meta`` fields of each source stored in the shard indexes too (e.g.
            ``("fold",)``), so recipes select samples without reading them.
        part, num_parts: prepare only part ``part`` (0-based) of ``num_parts``
            (:func:`part_range`); shards are named after the part and the folder's
            ``dataset.json`` is written when the last part finishes.

    Returns:
        The ``dataset.json`` contents (see :mod:`zorro.data.shards.format`); for a part
        whose job is not complete yet, the part's record (``OUT/parts/part-KKKK.json``).

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
    part, num_parts = _check_parts(part, num_parts)
    if isinstance(sources, SourceTable):
        table = sources
        if table.labels != list(labels) or table.multi_label != bool(multi_label):
            raise ValueError("the SourceTable's labels / multi_label differ from the labels / multi_label given")
    else:
        table = SourceTable.from_sources(list(sources), list(labels), bool(multi_label))
    try:
        extra = json.loads(json.dumps(dict(extra_info or {})))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra_info must be JSON-serialisable ({exc})") from None
    index_fields = [str(f) for f in index_fields]
    if s.modalities:
        for name, kind in s.modalities:
            have = sum(name in json.loads(table.extra_text(i)) for i in range(len(table)))
            logger.info("%d of %d sources have %r (%s; stored as %s members); %d without", have, len(table), name, kind,
                        f"{name}.{'txt' if kind == 'text' else 'npy'}", len(table) - have)
    num_missing, num_dropped = count_list(missing), count_list(dropped_rows)
    vocab = {name: k for k, name in enumerate(table.labels)}
    settings_d = settings_record(s)
    fingerprint = _fingerprint(table, settings_d, index_fields)
    lo, hi = (0, len(table)) if part is None else part_range(table, part, num_parts, s)
    job_counts = {**{k: int(v) for k, v in (annotation_counts or {}).items()}, "found": len(table), "missing": num_missing,
                  "dropped_rows": num_dropped}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a folder zorro prepare worked in before has its lock file (or at least dataset.json)
    if not ((out / _lock_name(part)).exists() or (out / DATASET_JSON).exists() or (out / PARTS_DIR / f"part-{part or 0:04d}.json").exists()):
        _refuse_foreign_shards(out, part)  # before the lock file marks the folder as ours
    _refuse_mixing(out, part)

    with _folder_lock(out, part):
        finished = _scan_finished(out, fingerprint, settings_d, part, num_parts, lo)
        resume = int(finished[-1]["source_end"]) if finished else lo
        next_sample = sum(int(ix["num_samples"]) for ix in finished)
        if finished:
            logger.info("resuming: %d finished shard(s) hold sources [%d, %d) (%d samples); decoding the %d left", len(finished), lo,
                        resume, next_sample, hi - resume)
        tail_unreadable = _finished_tail(out, fingerprint, finished, resume, part)
        if tail_unreadable is not None:  # an earlier run finished: its last sources were all unreadable
            resume = hi
        elif resume < hi:
            record = out / DATASET_JSON if part is None else out / PARTS_DIR / f"part-{part:04d}.json"
            if record.exists() and (part is not None or not json.loads(record.read_text(encoding="utf-8")).get("dry_run")):
                record.unlink()

        pause = float(os.environ.get(TEST_PAUSE_ENV, "0") or 0)
        shards = [dict(ix) for ix in finished]
        pending_unreadable: list[dict[str, Any]] = tail_unreadable or []  # since the last committed shard
        pending_skipped: list[dict[str, Any]] = []
        writer: ShardWriter | None = None
        shard_start = resume
        jobs = ((i, table[i], s, vocab) for i in range(resume, hi))
        t0 = time.monotonic()
        done_sources = 0

        def index_meta(i: int) -> dict[str, Any]:
            if not index_fields:
                return {}
            meta = json.loads(table.meta_text(i))
            return {f: meta.get(f) for f in index_fields}

        def commit_shard(source_end: int) -> None:
            """Finish the open shard, which holds sources [shard_start, source_end), with what
            a restart needs in its index, and add its summary to ``shards``."""
            writer.extra_index = {
                "source_start": shard_start,
                "source_end": source_end,
                "first_sample": next_sample - writer.num_samples,
                "part": part,
                "num_parts": num_parts,
                "unreadable": pending_unreadable,
                "skipped_windows": pending_skipped,
                "fingerprint": fingerprint,
                "settings": settings_d,
            }
            shards.append(_summary(writer.commit()))

        try:
            for res in _run_jobs(jobs, min(workers, max(1, hi - resume))):
                i = res["index"]
                done_sources += 1
                if "unreadable" in res:
                    pending_unreadable.append({"source": i, "path": table.path(i), "reason": res["unreadable"]})
                    logger.warning("unreadable: %s (%s)", table.path(i), res["unreadable"])
                else:
                    if writer is None:
                        writer = ShardWriter(out, len(shards), part=part)
                    ids, meta = table.label_ids(i), index_meta(i)
                    for members in res["samples"]:
                        writer.add(sample_key(next_sample, part), members, label_ids=ids, meta=meta)
                        next_sample += 1
                        if pause:
                            time.sleep(pause)
                    for sk in res["skipped"]:
                        pending_skipped.append({"source": i, "path": table.path(i), **sk})
                full = writer is not None and (
                    (s.samples_per_shard is not None and writer.num_samples >= s.samples_per_shard)
                    or (s.shard_bytes is not None and writer.bytes_written >= s.shard_bytes)
                )
                if full:
                    commit_shard(i + 1)
                    rate = done_sources / max(time.monotonic() - t0, 1e-9)
                    logger.info(
                        "wrote %s (%d samples, sources [%d, %d) of [%d, %d), %.2f sources/s, ~%.0f min left)",
                        writer.name, writer.num_samples, shard_start, i + 1, lo, hi, rate, (hi - i - 1) / rate / 60,
                    )
                    writer, shard_start, pending_unreadable, pending_skipped = None, i + 1, [], []
                elif writer is None and not pending_unreadable and not pending_skipped:
                    shard_start = i + 1
            if writer is not None:
                commit_shard(hi)
                logger.info("wrote %s (%d samples)", writer.name, writer.num_samples)
                writer, pending_unreadable, pending_skipped = None, [], []
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

        unreadable = [u for ix in shards for u in ix.get("unreadable", [])] + pending_unreadable
        skipped_windows = [{"path": u["path"], "window": u["window"], "start": u["start"], "reason": u["reason"]}
                           for ix in shards for u in ix.get("skipped_windows", [])] + [
            {"path": u["path"], "window": u["window"], "start": u["start"], "reason": u["reason"]} for u in pending_skipped]
        unreadable = [{"path": u["path"], "reason": u["reason"], "source": u["source"]} for u in unreadable]
        num_samples = sum(int(ix["num_samples"]) for ix in shards)
        written = (hi - lo) - len(unreadable)
        shard_list = [{"name": ix["shard"], "index": index_name(k, part), "num_samples": int(ix["num_samples"]),
                       "bytes": int(ix["bytes"])} for k, ix in enumerate(shards)]
        if unreadable:
            logger.warning("%d of %d source(s) unreadable (listed in %s)", len(unreadable), hi - lo,
                           out / (LIST_FILES["unreadable"] if part is None else f"{PARTS_DIR}/{part_list_name(part, 'unreadable')}"))
        if part is None:
            write_list(out / LIST_FILES["missing"], missing)
            write_list(out / LIST_FILES["dropped_rows"], dropped_rows)
            write_list(out / LIST_FILES["unreadable"], unreadable)
            write_list(out / LIST_FILES["skipped_windows"], skipped_windows)
            counts = {**job_counts, "sources": len(table) + num_missing, "written": written, "unreadable": len(unreadable),
                      "samples": num_samples, "skipped_windows": len(skipped_windows)}
            desc = describe(labels=table.labels, multi_label=table.multi_label, shards=shard_list, counts=counts,
                            settings=settings_d, versions=_versions(), fingerprint=fingerprint, extra=extra)
            write_json_atomic(out / DATASET_JSON, desc)
            logger.info("prepared %d samples from %d source(s) into %d shard(s) in %s", num_samples, written, len(shards), out)
            return desc
        m_lo, m_hi = _share(num_missing, part, num_parts)
        d_lo, d_hi = _share(num_dropped, part, num_parts)
        record = {
            "part": part, "num_parts": num_parts, "source_start": lo, "source_end": hi, "fingerprint": fingerprint,
            "labels": table.labels, "multi_label": table.multi_label, "settings": settings_d, "index_fields": index_fields,
            "extra": extra, "versions": _versions(), "job_counts": job_counts,
            "part_counts": {"sources": hi - lo, "written": written, "unreadable": len(unreadable), "samples": num_samples,
                            "skipped_windows": len(skipped_windows), "missing": m_hi - m_lo, "dropped_rows": d_hi - d_lo},
            "shards": shard_list,
        }
        write_part_record(out, record, {"missing": (missing, m_lo, m_hi), "dropped_rows": (dropped_rows, d_lo, d_hi),
                                        "unreadable": (unreadable, 0, None), "skipped_windows": (skipped_windows, 0, None)})
        logger.info("part %d of %d: %d samples from %d source(s) [%d, %d) into %d shard(s) in %s", part, num_parts, num_samples, written,
                    lo, hi, len(shards), out)
    merged = merge_parts(out, required=False)
    return merged if merged is not None else record
