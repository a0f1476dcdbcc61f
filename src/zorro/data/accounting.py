"""What a prepared folder says about its contents: ``dataset.json``, the per-item lists beside
it, the records of a folder prepared in parts, and the merge of those parts.

Layout and field meanings: :mod:`zorro.data.shards.format`. This module writes them:

* :func:`describe` assembles ``dataset.json`` (counts only: its size does not grow with the
  number of clips; the lists go to JSON-lines files, :func:`write_list`);
* :func:`write_dry_run` writes the accounting of ``zorro prepare --dry-run`` (no shards);
* a part of a job (``zorro prepare ... --part K --num-parts N``) records what it did in
  ``OUT/parts/part-KKKK.json`` plus its share of each list (``part-KKKK.missing.jsonl``,
  ...); :func:`merge_parts` checks that the parts agree and cover the job and writes the one
  ``dataset.json`` with its lists. Every file is written under a fresh temporary name and
  renamed into place, and a merge's output depends only on the part records, so two merges
  running at once (two parts finishing together) write the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from zorro.data.shards.format import (
    DATASET_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    LIST_FILES,
    JsonlWriter,
    parse_shard_file,
    read_json_or_none,
    write_json_atomic,
)
from zorro.fileio import fsync_dir

logger = logging.getLogger(__name__)

__all__ = ["PARTS_DIR", "MERGE_LOCK", "part_record_name", "part_list_name", "describe", "write_list", "count_list",
           "write_dry_run", "read_part_record", "write_part_record", "merge_parts", "ListSource"]

#: sub-folder of the part records
PARTS_DIR = "parts"
#: lock file a merge holds (folder-wide)
MERGE_LOCK = ".zorro-merge.lock"

#: a list to write: JSON-able dicts, or a JSON-lines file to copy (a :class:`os.PathLike`), or None (empty)
ListSource = Sequence[Mapping[str, Any]] | os.PathLike | None


def part_record_name(part: int) -> str:
    """``part-0003.json``: the record of part 3 (in ``OUT/parts``)."""
    return f"part-{int(part):04d}.json"


def part_list_name(part: int, kind: str) -> str:
    """``part-0003.missing.jsonl``: part 3's share of a list (in ``OUT/parts``)."""
    if kind not in LIST_FILES:
        raise ValueError(f"kind must be one of {sorted(LIST_FILES)}, got {kind!r}")
    return f"part-{int(part):04d}.{LIST_FILES[kind]}"


def _iter_source(source: ListSource) -> Iterator[str]:
    """The JSON lines (without newline) of a list source."""
    if source is None:
        return
    if isinstance(source, os.PathLike):
        with open(source, encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if line.strip():
                    yield line
        return
    if isinstance(source, (str, bytes)):
        raise TypeError("a list must be a sequence of JSON objects or a pathlib.Path of a JSON-lines file, got a string")
    for entry in source:
        try:
            yield json.dumps(entry, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"list entries must be JSON-serialisable ({exc})") from None


def count_list(source: ListSource) -> int:
    """The number of entries of a list source (a file's non-blank lines)."""
    if source is None:
        return 0
    if isinstance(source, os.PathLike):
        return sum(1 for _ in _iter_source(source))
    return len(source)


def write_list(path: str | os.PathLike, source: ListSource, *, lo: int = 0, hi: int | None = None, move: bool = False) -> int:
    """Write entries ``[lo, hi)`` of ``source`` to the JSON-lines file ``path`` atomically;
    returns how many were written (a whole JSON-lines file is copied as it is, or, with
    ``move``, made durable and renamed into place: the caller gives it up)."""
    if isinstance(source, os.PathLike) and lo == 0 and hi is None and move:
        with open(source, "rb+") as fh:
            count = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            os.fsync(fh.fileno())
        os.replace(source, path)
        fsync_dir(Path(path).parent)
        return count
    if isinstance(source, os.PathLike) and lo == 0 and hi is None:
        with JsonlWriter(path) as out:
            out.write_bytes_from(source)
            return out.count
    with JsonlWriter(path) as out:
        for k, line in enumerate(_iter_source(source)):
            if k < lo:
                continue
            if hi is not None and k >= hi:
                break
            out.write_line(line)
        return out.count


def describe(
    *,
    labels: Sequence[str],
    multi_label: bool,
    shards: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    settings: Mapping[str, Any],
    versions: Mapping[str, Any],
    fingerprint: str | None,
    extra: Mapping[str, Any],
    dry_run: bool = False,
    parts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of a version-2 ``dataset.json`` (see :mod:`zorro.data.shards.format`)."""
    desc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_samples": int(sum(int(s["num_samples"]) for s in shards)),
        "labels": list(labels),
        "multi_label": bool(multi_label),
        "shards": [dict(s) for s in shards],
        "counts": dict(counts),
        "lists": dict(LIST_FILES),
        "settings": dict(settings),
        "versions": dict(versions),
        "fingerprint": fingerprint,
        "extra": dict(extra),
        "dry_run": bool(dry_run),
    }
    if parts is not None:
        desc["parts"] = dict(parts)
    return desc


def write_dry_run(
    out_dir: str | os.PathLike,
    *,
    labels: Sequence[str],
    multi_label: bool,
    counts: Mapping[str, int],
    missing: ListSource,
    dropped_rows: ListSource,
    settings: Mapping[str, Any],
    extra: Mapping[str, Any],
    move_lists: bool = False,
) -> dict[str, Any]:
    """Write the accounting of a dry run into ``out_dir``: ``missing.jsonl``,
    ``dropped_rows.jsonl`` and ``dataset.json`` with ``dry_run: true``, no shards and the
    counts (``sources``, ``found``, ``missing``, and the annotation counts given). Returns the
    ``dataset.json`` contents. ``move_lists``: the lists are files (in ``out_dir``'s file
    system) to rename into place rather than copy.

    Raises:
        ValueError: ``out_dir`` holds a prepared dataset (a dry run never overwrites one).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = out / DATASET_JSON
    if existing.is_file():
        old = read_json_or_none(existing) or {}
        if not old.get("dry_run", False):
            raise ValueError(f"{str(out)!r} holds a prepared dataset; give the dry run another --out folder")
    if any(parse_shard_file(p.name) for p in out.iterdir()) or (out / PARTS_DIR).exists():
        raise ValueError(f"{str(out)!r} holds shards of a prepare run; give the dry run another --out folder")
    write_list(out / LIST_FILES["missing"], missing, move=move_lists)
    write_list(out / LIST_FILES["dropped_rows"], dropped_rows, move=move_lists)
    for kind in ("unreadable", "skipped_windows"):
        write_list(out / LIST_FILES[kind], None)
    desc = describe(labels=labels, multi_label=multi_label, shards=[], counts=counts, settings=settings, versions={},
                    fingerprint=None, extra=extra, dry_run=True)
    write_json_atomic(out / DATASET_JSON, desc)
    return desc


def read_part_record(out_dir: str | os.PathLike, part: int) -> dict[str, Any] | None:
    """Part ``part``'s record, or None when it has none (not finished) or it is unreadable."""
    obj = read_json_or_none(Path(out_dir) / PARTS_DIR / part_record_name(part))
    return obj if obj is not None and obj.get("part") == part else None


def write_part_record(out_dir: str | os.PathLike, record: Mapping[str, Any], lists: Mapping[str, tuple[ListSource, int, int | None]]) -> None:
    """Write part ``record["part"]``'s share of each list (``{kind: (source, lo, hi)}``)
    then its record (last: the record marks the part finished)."""
    folder = Path(out_dir) / PARTS_DIR
    folder.mkdir(exist_ok=True)
    part = int(record["part"])
    for kind, (source, lo, hi) in lists.items():
        write_list(folder / part_list_name(part, kind), source, lo=lo, hi=hi)
    write_json_atomic(folder / part_record_name(part), dict(record))


@contextlib.contextmanager
def _merge_lock(out: Path):
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # not POSIX: merges are still atomic file by file and write the same bytes
        yield
        return
    fd = os.open(out / MERGE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_AGREE = ("num_parts", "fingerprint", "labels", "multi_label", "settings", "job_counts", "index_fields", "extra")


def merge_parts(out_dir: str | os.PathLike, *, required: bool = True) -> dict[str, Any] | None:
    """Write the one ``dataset.json`` (and its lists) of a folder prepared in parts.

    Args:
        out_dir: the folder the parts wrote into.
        required: raise when a part has not finished (``zorro prepare merge``); False
            returns None instead (a part finishing while others still run).

    Returns:
        the ``dataset.json`` contents, or None (``required=False`` and a part missing).

    Raises:
        ValueError: no part record; parts of different jobs (settings, sources, number of
            parts); a part that has not finished (naming it); a shard of a part missing or
            of the wrong size; counts that do not add up.
    """
    out = Path(out_dir)
    folder = out / PARTS_DIR
    names = sorted(p.name for p in folder.glob("part-[0-9][0-9][0-9][0-9].json")) if folder.is_dir() else []
    if not names:
        raise ValueError(f"{str(out)!r} has no part records ({PARTS_DIR}/part-NNNN.json): it was not prepared with --part/--num-parts")
    with _merge_lock(out):
        records = {}
        for name in names:
            part = int(name[5:9])
            rec = read_part_record(out, part)
            if rec is None:
                raise ValueError(f"{folder / name} is unreadable")
            records[part] = rec
        first = records[min(records)]
        num_parts = int(first["num_parts"])
        for part, rec in records.items():
            for key in _AGREE:
                if rec.get(key) != first.get(key):
                    raise ValueError(
                        f"{str(out)!r}: part {part} and part {min(records)} disagree on {key!r} (different sources, settings or "
                        f"number of parts): parts of one job must be run with the same command and inputs"
                    )
        absent = [k for k in range(num_parts) if k not in records]
        if absent:
            if not required:
                logger.info("part(s) %s of %d have not finished; the last part to finish writes %s", absent, num_parts, DATASET_JSON)
                return None
            raise ValueError(
                f"cannot merge {str(out)!r}: part(s) {absent} of {num_parts} have not finished (no "
                f"{', '.join(f'{PARTS_DIR}/{part_record_name(k)}' for k in absent[:5])}); run them with --part K --num-parts {num_parts} "
                f"and merge again"
            )
        extra_parts = sorted(k for k in records if k >= num_parts)
        if extra_parts:
            raise ValueError(f"{str(out)!r}: part records {extra_parts} do not belong to a job of {num_parts} parts")
        ordered = [records[k] for k in range(num_parts)]
        job = first["job_counts"]
        position = 0
        for rec in ordered:
            if rec["source_start"] != position:
                raise ValueError(f"{str(out)!r}: part {rec['part']} starts at source {rec['source_start']}, expected {position}")
            position = rec["source_end"]
        if position != job["found"]:
            raise ValueError(f"{str(out)!r}: the parts cover {position} sources, the job has {job['found']}")
        shards = []
        for rec in ordered:
            for sh in rec["shards"]:
                p = out / sh["name"]
                if not p.is_file() or p.stat().st_size != sh["bytes"] or not (out / sh["index"]).is_file():
                    raise ValueError(f"{str(out)!r}: shard {sh['name']} of part {rec['part']} is missing or damaged; rerun that part")
                shards.append(sh)
        totals = {k: sum(int(rec["part_counts"][k]) for rec in ordered) for k in ("written", "unreadable", "samples", "skipped_windows",
                                                                                   "missing", "dropped_rows")}
        for kind in ("missing", "dropped_rows"):
            if totals[kind] != job[kind]:
                raise ValueError(f"{str(out)!r}: the parts hold {totals[kind]} {kind} entries, the job has {job[kind]}")
        if totals["written"] + totals["unreadable"] != job["found"]:
            raise ValueError(f"{str(out)!r}: written + unreadable = {totals['written'] + totals['unreadable']}, the job has {job['found']} sources")
        for kind in LIST_FILES:
            with JsonlWriter(out / LIST_FILES[kind]) as dst:
                for rec in ordered:
                    src = folder / part_list_name(rec["part"], kind)
                    if src.is_file():
                        with open(src, encoding="utf-8") as fh:
                            for line in fh:
                                if line.strip():
                                    dst.write_line(line.rstrip("\n"))
        counts = dict(job)
        counts.update({"sources": job["found"] + job["missing"], "written": totals["written"], "unreadable": totals["unreadable"],
                       "samples": totals["samples"], "skipped_windows": totals["skipped_windows"]})
        versions = first.get("versions", {})
        parts_info: dict[str, Any] = {"num_parts": num_parts, "records": PARTS_DIR}
        differing = [rec["versions"] for rec in ordered if rec.get("versions") != versions]
        if differing:
            parts_info["versions"] = [rec.get("versions", {}) for rec in ordered]
        desc = describe(labels=first["labels"], multi_label=first["multi_label"], shards=shards, counts=counts, settings=first["settings"],
                        versions=versions, fingerprint=first["fingerprint"], extra=first["extra"], parts=parts_info)
        write_json_atomic(out / DATASET_JSON, desc)
        logger.info("merged %d parts into %s: %d samples from %d sources in %d shards", num_parts, out / DATASET_JSON,
                    desc["num_samples"], counts["written"], len(shards))
        return desc

