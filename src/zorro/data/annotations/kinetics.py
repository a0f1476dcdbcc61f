"""Kinetics-400 annotations and file trees, and the Kinetics-Sounds subset.

* The annotation CSVs (``train.csv``, ``validate.csv``, ``test.csv``) have the header
  ``label,youtube_id,time_start,time_end,split[,is_cc]``; times are whole seconds.
* Downloaded clips are commonly arranged torchvision-style:
  ``ROOT/split/class_name/{ytid}_{start:06d}_{end:06d}.mp4`` (some tools write the class
  folder with underscores for spaces).
* Kinetics-Sounds has no official class list; :func:`kinetics_sounds_classes` returns the
  one shipped in ``kinetics_sounds.txt`` (its header says where it comes from).

Class ids are the selected class names sorted.
"""

from __future__ import annotations

import csv
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Sequence

from zorro.data.annotations.records import DroppedRows, ParseResult, Segment, check_on_error

logger = logging.getLogger(__name__)

__all__ = ["read_class_list", "kinetics_sounds_classes", "read_kinetics_csv", "scan_kinetics_tree", "kinetics_clip_id"]

_CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
_NAME = re.compile(r"^(?P<ytid>.+)_(?P<start>\d+)_(?P<end>\d+)$")


def read_class_list(path: str | Path) -> list[str]:
    """Class names from a text file, one a line; blank lines and ``#`` comments are ignored.

    Raises:
        ValueError: no name, or a name listed twice.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} does not exist")
    return _parse_class_list(path.read_text(encoding="utf-8"), str(path))


def _parse_class_list(text: str, source: str) -> list[str]:
    names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not names:
        raise ValueError(f"{source}: no class name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{source}: class names listed twice: {dup}")
    return names


def kinetics_sounds_classes() -> list[str]:
    """The Kinetics-Sounds class list shipped with zorro (31 Kinetics-400 class names, sorted)."""
    text = resources.files("zorro.data.annotations").joinpath("kinetics_sounds.txt").read_text(encoding="utf-8")
    return sorted(_parse_class_list(text, "kinetics_sounds.txt"))


def kinetics_clip_id(ytid: str, start: int, end: int) -> str:
    """The key of a clip, as in torchvision-style file names: ``"{ytid}_{start:06d}_{end:06d}"``."""
    return f"{ytid}_{start:06d}_{end:06d}"


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


def read_kinetics_csv(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split: str | None = None,
    on_error: str = "raise",
) -> ParseResult:
    """Read a Kinetics-400 annotation CSV, keeping the clips of ``classes``.

    Args:
        path: the CSV (header ``label,youtube_id,time_start,time_end,split[,is_cc]``).
        classes: class names to keep (e.g. :func:`kinetics_sounds_classes`); None keeps all.
            Each must occur in the file (compared ignoring case and ``_`` vs space): a name
            that never occurs means the list and the annotation do not match.
        split: keep only rows whose ``split`` column equals this (e.g. ``"train"``).
        on_error: ``"raise"`` at the first unusable row (wrong field count, non-integer or
            inverted times, empty id or label, a clip listed twice) or ``"skip"`` and count it.

    Returns:
        a :class:`ParseResult` (single label) whose labels are the kept class names sorted
        (spelled as in ``classes``); rows of other classes or splits are counted in
        ``filtered``; ``extra`` holds ``is_cc`` when the column exists.

    Raises:
        ValueError: a different header, an unusable row (with its line number), a class of
            ``classes`` absent from the file.
        FileNotFoundError: no such file.
    """
    check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kinetics annotation file {path} does not exist")
    wanted = None if classes is None else {_normalise(c): c for c in classes}
    records: list[Segment] = []
    dropped = DroppedRows(on_error)
    seen: dict[str, int] = {}
    present: set[str] = set()
    other_class = other_split = 0


    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        cols = tuple(h.strip() for h in header) if header else ()
        if cols[:5] != _CSV_COLUMNS or len(cols) not in (5, 6):
            raise ValueError(f"{path}: expected the Kinetics header 'label,youtube_id,time_start,time_end,split[,is_cc]', got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(cols):
                dropped(path, line, "malformed row", f"expected {len(cols)} fields, got {len(row)}: {row!r}")
                continue
            label, ytid, raw_start, raw_end, row_split = (c.strip() for c in row[:5])
            try:
                start, end = int(float(raw_start)), int(float(raw_end))
            except ValueError:
                dropped(path, line, "malformed row", f"time_start/time_end must be numbers, got {raw_start!r}, {raw_end!r}")
                continue
            if not label or not ytid or not (0 <= start < end):
                dropped(path, line, "malformed row", f"need a label, a YouTube id and 0 <= start < end, got {row!r}")
                continue
            key = kinetics_clip_id(ytid, start, end)
            if key in seen:
                dropped(path, line, "duplicate clip", f"{key} already listed at line {seen[key]}")
                continue
            seen[key] = line
            norm = _normalise(label)
            present.add(norm)
            if wanted is not None and norm not in wanted:
                other_class += 1
                continue
            if split is not None and row_split != split:
                other_split += 1
                continue
            extra = {"is_cc": row[5].strip()} if len(cols) == 6 else {}
            records.append(Segment(id=key, labels=(wanted[norm] if wanted else label,), ytid=ytid, start=float(start),
                                   end=float(end), split=row_split, source=str(path), line=line, extra=extra))
    if wanted is not None:
        absent = sorted(c for n, c in wanted.items() if n not in present)
        if absent:
            raise ValueError(
                f"{path}: {len(absent)} of the {len(wanted)} classes never occur in the annotation (class list and CSV do "
                f"not match): {absent[:8]}"
            )
        labels = sorted(wanted.values())
    else:
        labels = sorted({r.labels[0] for r in records})
    if not records:
        raise ValueError(f"{path}: no clip of the selected classes" + (f" in split {split!r}" if split else ""))
    filtered = {}
    if wanted is not None:
        filtered["class not in the subset"] = other_class
    if split is not None:
        filtered[f"split is not {split}"] = other_split
    if dropped:
        logger.warning("Kinetics: %d rows left out of %s", len(dropped), path)
    return ParseResult(records=records, labels=labels, multi_label=False, dropped=dropped, filtered=filtered)


def scan_kinetics_tree(root: str | Path, *, classes: Sequence[str] | None = None, extensions: Sequence[str] | None = None) -> ParseResult:
    """Clips of a torchvision-style tree ``root/class_name/{ytid}_{start:06d}_{end:06d}.ext``
    (give ``root`` = the split's folder), for use without the annotation CSV.

    Args:
        root: the folder holding one sub-folder per class.
        classes: class names to keep (folders compared ignoring case and ``_`` vs space);
            None keeps every folder. A listed class without a folder raises ValueError.
        extensions: media extensions to take (default: :data:`zorro.data.annotations.media.MEDIA_EXTENSIONS`).

    Returns:
        a :class:`ParseResult` whose records have ``filename`` = the path relative to
        ``root``; files whose names do not follow the pattern keep ``start``/``end`` None
        (the whole file) and are counted in ``filtered["name without times"]``.
    """
    from zorro.data.annotations.media import MEDIA_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Kinetics tree {root} is not a folder")
    exts = {e.lower() for e in (extensions or MEDIA_EXTENSIONS)}
    wanted = None if classes is None else {_normalise(c): c for c in classes}
    folders = {_normalise(p.name): p for p in sorted(root.iterdir()) if p.is_dir()}
    if wanted is not None:
        absent = sorted(c for n, c in wanted.items() if n not in folders)
        if absent:
            raise ValueError(f"{root}: no folder for {len(absent)} of the {len(wanted)} classes: {absent[:8]}")
    records: list[Segment] = []
    plain = 0
    for norm, folder in sorted(folders.items()):
        if wanted is not None and norm not in wanted:
            continue
        label = wanted[norm] if wanted else folder.name
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.suffix.lower() not in exts:
                continue
            m = _NAME.match(p.stem)
            rel = p.relative_to(root).as_posix()
            if m is None:
                plain += 1
                records.append(Segment(id=rel, labels=(label,), filename=rel, source=str(root)))
                continue
            ytid, start, end = m["ytid"], int(m["start"]), int(m["end"])
            records.append(Segment(id=kinetics_clip_id(ytid, start, end), labels=(label,), ytid=ytid, start=float(start),
                                   end=float(end), filename=rel, source=str(root)))
    if not records:
        raise ValueError(f"{root}: no media file in the class folders")
    labels = sorted(wanted.values()) if wanted else sorted({r.labels[0] for r in records})
    return ParseResult(records=records, labels=labels, multi_label=False, filtered={"name without times": plain} if plain else {})
