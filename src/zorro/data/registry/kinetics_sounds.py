"""Kinetics-Sounds: the Kinetics-400 clips of 31 classes that can be heard, single label.

* The Kinetics-400 annotation CSVs (``train.csv``, ``validate.csv``, ``test.csv``) have the
  header ``label,youtube_id,time_start,time_end,split[,is_cc]``; times are whole seconds.
  The ``split`` column's values differ between distributions (DeepMind's files say
  ``validate``, the CVDF ones ``val``): ``--split`` with a value no row has stops with the
  values present.
* Downloaded clips are commonly arranged torchvision-style:
  ``ROOT/split/class_name/{ytid}_{start:06d}_{end:06d}.mp4`` (some tools write the class
  folder with underscores for spaces); such a tree can stand in for the CSV.
* Kinetics-Sounds has no official class list; :func:`kinetics_sounds_classes` returns the
  one shipped in ``kinetics_sounds.txt`` beside this module (its header says where it comes
  from).

Class ids are the selected class names sorted. Protocol: top-1 and top-5 accuracy.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Iterator, Sequence

from zorro.data.annotations.records import AnnotationReader, ParseResult, Segment, SegmentRow, check_on_error
from zorro.data.registry import DatasetSpec, Protocol

logger = logging.getLogger(__name__)

__all__ = ["KineticsCSV", "KineticsTree", "read_class_list", "kinetics_sounds_classes", "read_kinetics_csv",
           "scan_kinetics_tree", "kinetics_clip_id", "SPEC"]

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
    text = resources.files("zorro.data.registry").joinpath("kinetics_sounds.txt").read_text(encoding="utf-8")
    return sorted(_parse_class_list(text, "kinetics_sounds.txt"))


def kinetics_clip_id(ytid: str, start: int, end: int) -> str:
    """The key of a clip, as in torchvision-style file names: ``"{ytid}_{start:06d}_{end:06d}"``."""
    return f"{ytid}_{start:06d}_{end:06d}"


def _normalise(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).lower()


class KineticsCSV(AnnotationReader):
    """A Kinetics-400 annotation CSV, streamed, keeping the clips of ``classes``.

    Args:
        path: the CSV (header ``label,youtube_id,time_start,time_end,split[,is_cc]``).
        classes: class names to keep (e.g. :func:`kinetics_sounds_classes`); None keeps all.
            Each must occur in the file (compared ignoring case and ``_`` vs space): a name
            that never occurs means the list and the annotation do not match.
        split: keep only rows whose ``split`` column equals this (e.g. ``"train"``); a value
            that no row has is an error listing the values present.
        on_error: ``"raise"`` at the first unusable row (wrong field count, non-integer or
            inverted times, empty id or label) or ``"skip"`` and count it.

    Rows of other classes or splits are counted in ``filtered``; ``extra`` holds ``is_cc``
    when the column exists.
    """

    duplicate_reason = "duplicate clip"

    def __init__(self, path: str | Path, *, classes: Sequence[str] | None = None, split: str | None = None,
                 on_error: str = "raise") -> None:
        check_on_error(on_error)
        self.path = Path(path)
        super().__init__([str(self.path)], on_error)
        self.wanted = None if classes is None else {_normalise(c): c for c in classes}
        self.split = split
        self._found: set[str] = set()

    def labels(self) -> list[str]:
        """The kept class names sorted (spelled as in ``classes``)."""
        if self.wanted is not None:
            return sorted(self.wanted.values())
        return sorted(self._found)

    def _rows(self) -> Iterator[SegmentRow]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"Kinetics annotation file {path} does not exist")
        wanted, dropped, source = self.wanted, self.dropped, str(path)
        present: set[str] = set()
        splits: set[str] = set()
        self._found = set()
        kept = 0
        new = tuple.__new__
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
                self.rows += 1
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
                splits.add(row_split)
                norm = _normalise(label)
                present.add(norm)
                if wanted is not None and norm not in wanted:
                    self.filtered["class not in the subset"] += 1
                    continue
                if self.split is not None and row_split != self.split:
                    self.filtered[f"split is not {self.split}"] += 1
                    continue
                kept += 1
                name = wanted[norm] if wanted else label
                self._found.add(name)
                yield new(SegmentRow, (kinetics_clip_id(ytid, start, end), (name,), ytid, float(start), float(end), row_split,
                                       None, None, source, line, {"is_cc": row[5].strip()} if len(cols) == 6 else None))
        if wanted is not None:
            absent = sorted(c for n, c in wanted.items() if n not in present)
            if absent:
                raise ValueError(
                    f"{path}: {len(absent)} of the {len(wanted)} classes never occur in the annotation (class list and CSV do "
                    f"not match): {absent[:8]}"
                )
        if self.split is not None and self.split not in splits:
            raise ValueError(f"{path}: no row has split {self.split!r}; the split values present are {sorted(splits)}")
        if not kept:
            raise ValueError(f"{path}: no clip of the selected classes" + (f" in split {self.split!r}" if self.split else ""))


def read_kinetics_csv(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split: str | None = None,
    on_error: str = "raise",
) -> ParseResult:
    """Read a Kinetics-400 annotation CSV into memory, keeping the clips of ``classes``
    (:class:`KineticsCSV`).

    Returns:
        a :class:`ParseResult` (single label) whose labels are the kept class names sorted
        (spelled as in ``classes``); rows of other classes or splits are counted in
        ``filtered``; ``extra`` holds ``is_cc`` when the column exists; a clip already
        listed is dropped as ``"duplicate clip"``.

    Raises:
        ValueError: a different header, an unusable row (with its line number), a class of
            ``classes`` absent from the file, a ``split`` no row has (listing those present).
        FileNotFoundError: no such file.
    """
    res = KineticsCSV(path, classes=classes, split=split, on_error=on_error).read()
    if res.dropped:
        logger.warning("Kinetics: %d rows left out of %s", len(res.dropped), path)
    return res


class KineticsTree(AnnotationReader):
    """Clips of a torchvision-style tree ``root/class_name/{ytid}_{start:06d}_{end:06d}.ext``
    (give ``root`` = the split's folder), for use without the annotation CSV: the tree is the
    annotation, each row's ``filename`` the path relative to ``root`` (default template
    ``{filename}``).

    Args:
        root: the folder holding one sub-folder per class.
        classes: class names to keep (folders compared ignoring case and ``_`` vs space);
            None keeps every folder. A listed class without a folder raises ValueError.
        extensions: media extensions to take (default:
            :data:`zorro.data.annotations.media.MEDIA_EXTENSIONS`).

    Files whose names do not follow the pattern keep ``start``/``end`` None (the whole file)
    and are counted in :attr:`without_times` (they are kept all the same).
    """

    templates = ("{filename}",)

    def __init__(self, root: str | Path, *, classes: Sequence[str] | None = None, extensions: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        super().__init__([], "raise")
        self.wanted = None if classes is None else {_normalise(c): c for c in classes}
        self.extensions = extensions
        self._found: set[str] = set()
        self.without_times = 0

    def labels(self) -> list[str]:
        """The kept class names sorted."""
        return sorted(self.wanted.values()) if self.wanted else sorted(self._found)

    def _rows(self) -> Iterator[SegmentRow]:
        from zorro.data.annotations.media import MEDIA_EXTENSIONS

        root = self.root
        if not root.is_dir():
            raise FileNotFoundError(f"Kinetics tree {root} is not a folder")
        exts = {e.lower() for e in (self.extensions or MEDIA_EXTENSIONS)}
        wanted = self.wanted
        folders = {_normalise(p.name): p for p in sorted(root.iterdir()) if p.is_dir()}
        if wanted is not None:
            absent = sorted(c for n, c in wanted.items() if n not in folders)
            if absent:
                raise ValueError(f"{root}: no folder for {len(absent)} of the {len(wanted)} classes: {absent[:8]}")
        self._found = set()
        self.without_times = 0
        for norm, folder in sorted(folders.items()):
            if wanted is not None and norm not in wanted:
                continue
            label = wanted[norm] if wanted else folder.name
            for p in sorted(folder.iterdir()):
                if not p.is_file() or p.suffix.lower() not in exts:
                    continue
                self.rows += 1
                self._found.add(label)
                m = _NAME.match(p.stem)
                rel = p.relative_to(root).as_posix()
                if m is None:
                    self.without_times += 1
                    yield SegmentRow(rel, (label,), filename=rel, source=str(root))
                    continue
                ytid, start, end = m["ytid"], int(m["start"]), int(m["end"])
                yield SegmentRow(kinetics_clip_id(ytid, start, end), (label,), ytid, float(start), float(end), filename=rel,
                                 source=str(root))
        if not self.rows:
            raise ValueError(f"{root}: no media file in the class folders")


def scan_kinetics_tree(root: str | Path, *, classes: Sequence[str] | None = None, extensions: Sequence[str] | None = None) -> ParseResult:
    """The clips of a torchvision-style tree, in memory (:class:`KineticsTree`).

    Returns:
        a :class:`ParseResult` whose records have ``filename`` = the path relative to
        ``root``; files whose names do not follow the pattern keep ``start``/``end`` None
        (the whole file) and are counted in ``filtered["name without times"]``.
    """
    reader = KineticsTree(root, classes=classes, extensions=extensions)
    records = [Segment.from_row(r) for r in reader]
    filtered = {"name without times": reader.without_times} if reader.without_times else {}
    return ParseResult(records=records, labels=reader.labels(), multi_label=False, filtered=filtered)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", help="Kinetics-400 annotation CSV (label,youtube_id,time_start,time_end,split[,is_cc]); "
                                 "without it, --media-root is read as one split's folder of class sub-folders")
    p.add_argument("--split", help="keep rows whose split column is this (e.g. train, val or validate: a value no row has "
                                   "stops with the values present)")
    p.add_argument("--classes", help="class list file, one Kinetics-400 class name a line (default: the shipped list)")


def _open_reader(args: argparse.Namespace, on_error: str) -> AnnotationReader:
    classes = read_class_list(args.classes) if args.classes else kinetics_sounds_classes()
    if args.csv:
        return KineticsCSV(args.csv, classes=classes, split=args.split, on_error=on_error)
    return KineticsTree(args.media_root, classes=classes)  # the tree is the annotation: files found as listed


SPEC = DatasetSpec(
    name="kinetics-sounds",
    title="Kinetics-Sounds",
    summary="Kinetics-Sounds from a Kinetics-400 CSV or torchvision-style tree",
    description="Prepared shards of the Kinetics-Sounds subset of Kinetics-400 (class list shipped with zorro, see "
                "docs/recipes.md; --classes for another). Give --csv (annotation) or neither (then --media-root is read as a "
                "split folder of class sub-folders).",
    multi_label=False,
    templates=("{ytid}_{start:06d}_{end:06d}", "{ytid}"),
    fields=("id", "ytid", "start", "end", "label", "split", "filename"),
    duration=10.0,
    protocol=Protocol(metrics="single_label", ks=(1, 5), headline="top1", summary="top-1 and top-5 on the validation split"),
    add_arguments=_add_arguments,
    open_reader=_open_reader,
    splits=("train", "val", "validate", "test"),
    class_ids="the class names of the list, sorted",
)
