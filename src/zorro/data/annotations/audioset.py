"""AudioSet annotation files as Google publishes them.

* ``class_labels_indices.csv``: header ``index,mid,display_name``, then one class a line;
  names are double-quoted when they contain commas (``1,/m/05zppz,"Male speech, man
  speaking"``). Class ids are taken from the ``index`` column (they must be 0..C-1, each once);
  the count is read, never assumed.
* Segment lists (``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``,
  ``eval_segments.csv``): three ``#`` lines (the last one names the columns
  ``# YTID, start_seconds, end_seconds, positive_labels``), then rows whose fields are
  separated by a comma and a space, the labels double-quoted and comma-joined::

      --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

  Most windows are 10 s; some are shorter (the end of the video). They are kept as they are.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from zorro.data.annotations.records import DroppedRows, ParseResult, Segment, check_on_error

logger = logging.getLogger(__name__)

__all__ = ["AudioSetClass", "read_audioset_labels", "read_audioset_segments", "audioset_segment_id"]

_SEGMENT_COLUMNS = ("ytid", "start_seconds", "end_seconds", "positive_labels")


@dataclass(frozen=True)
class AudioSetClass:
    """One row of ``class_labels_indices.csv``: class id, machine id (``/m/...``) and name."""

    index: int
    mid: str
    name: str


def read_audioset_labels(path: str | Path) -> list[AudioSetClass]:
    """Read ``class_labels_indices.csv``.

    Args:
        path: the file.

    Returns:
        the classes in class-id order (``result[i].index == i``).

    Raises:
        ValueError: a different header, a malformed row (with its line number), an index
            that is not an integer, indices that are not exactly ``0..C-1``, a repeated MID.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AudioSet label file {path} does not exist")
    classes: dict[int, AudioSetClass] = {}
    mids: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["index", "mid", "display_name"]:
            raise ValueError(
                f"{path}: expected the AudioSet class list with header 'index,mid,display_name' "
                f"(class_labels_indices.csv), got {header!r}"
            )
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{line}: expected 3 fields (index,mid,display_name), got {len(row)}: {row!r}")
            raw_index, mid, name = (c.strip() for c in row)
            try:
                index = int(raw_index)
            except ValueError:
                raise ValueError(f"{path}:{line}: class index must be an integer, got {raw_index!r}") from None
            if not mid or not name:
                raise ValueError(f"{path}:{line}: empty mid or display_name in {row!r}")
            if index in classes:
                raise ValueError(f"{path}:{line}: class index {index} appears twice")
            if mid in mids:
                raise ValueError(f"{path}:{line}: MID {mid} appears twice (first as class {mids[mid]})")
            classes[index] = AudioSetClass(index, mid, name)
            mids[mid] = index
    if not classes:
        raise ValueError(f"{path}: no classes")
    expected = set(range(len(classes)))
    if set(classes) != expected:
        missing = sorted(expected - set(classes))[:5]
        extra = sorted(set(classes) - expected)[:5]
        raise ValueError(
            f"{path}: class indices must be 0..{len(classes) - 1}, each once; missing {missing}, out of range {extra}"
        )
    return [classes[i] for i in range(len(classes))]


def class_names(classes: Sequence[AudioSetClass]) -> list[str]:
    """Vocabulary names in class-id order: the display names, made unique by appending the
    MID to any name that occurs more than once."""
    counts: dict[str, int] = {}
    for c in classes:
        counts[c.name] = counts.get(c.name, 0) + 1
    return [c.name if counts[c.name] == 1 else f"{c.name} ({c.mid})" for c in classes]


def audioset_segment_id(ytid: str, start: float) -> str:
    """The key of a segment: ``"{ytid}_{start:.3f}"`` (a video may hold several segments)."""
    return f"{ytid}_{start:.3f}"


def read_audioset_segments(
    paths: str | Path | Iterable[str | Path],
    classes: Sequence[AudioSetClass],
    *,
    on_error: str = "raise",
) -> ParseResult:
    """Read one or more AudioSet segment CSVs.

    Args:
        paths: the segment file(s), read in the order given.
        classes: the class list (:func:`read_audioset_labels`); labels are its display names.
        on_error: ``"raise"`` a ValueError at the first unusable row, or ``"skip"`` it and
            count it in ``result.dropped``. Unusable: a malformed row (wrong field count,
            non-numeric or inverted times, empty id or labels), a MID absent from
            ``classes``, a segment (YTID and start) already listed.

    Returns:
        a :class:`ParseResult` (``multi_label=True``); each record's ``extra`` holds its
        ``mids``; ``split`` is the file's stem (e.g. ``"eval_segments"``).

    Raises:
        ValueError: a file without the AudioSet header lines, or (``on_error="raise"``) an
            unusable row, with the file and line number. An unknown MID is reported as a
            label file that does not match the segments.
        FileNotFoundError: a file does not exist.
    """
    check_on_error(on_error)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("read_audioset_segments: no segment file given")
    names = class_names(classes)
    by_mid = {c.mid: names[c.index] for c in classes}
    records: list[Segment] = []
    dropped = DroppedRows(on_error)
    seen: dict[str, str] = {}


    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"AudioSet segment file {path} does not exist")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, skipinitialspace=True)
            header_seen = False
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if row[0].lstrip().startswith("#"):
                    cols = [c.strip().lstrip("#").strip().lower() for c in row]
                    if tuple(cols) == _SEGMENT_COLUMNS:
                        header_seen = True
                    continue
                if not header_seen:
                    raise ValueError(
                        f"{path}:{line}: not an AudioSet segment list: expected '#' header lines ending with "
                        f"'# YTID, start_seconds, end_seconds, positive_labels' before the first row"
                    )
                if len(row) != 4:
                    dropped(path, line, "malformed row", f"expected 4 fields (YTID, start, end, labels), got {len(row)}: {row!r}")
                    continue
                ytid, raw_start, raw_end, raw_labels = (c.strip() for c in row)
                try:
                    start, end = float(raw_start), float(raw_end)
                except ValueError:
                    dropped(path, line, "malformed row", f"start/end must be numbers, got {raw_start!r}, {raw_end!r}")
                    continue
                if not ytid or not (0 <= start < end):
                    dropped(path, line, "malformed row", f"need a YTID and 0 <= start < end, got {ytid!r}, {start}, {end}")
                    continue
                mids = tuple(m.strip() for m in raw_labels.split(",") if m.strip())
                if not mids:
                    dropped(path, line, "malformed row", "no label")
                    continue
                unknown = [m for m in mids if m not in by_mid]
                if unknown:
                    dropped(path, line, "unknown MID",
                        f"{unknown} not in the class list ({len(by_mid)} classes): the label file does not match the segments")
                    continue
                key = audioset_segment_id(ytid, start)
                if key in seen:
                    dropped(path, line, "duplicate segment", f"{key} already listed at {seen[key]}")
                    continue
                seen[key] = f"{path.name}:{line}"
                labels = tuple(dict.fromkeys(by_mid[m] for m in mids))
                records.append(Segment(id=key, labels=labels, ytid=ytid, start=start, end=end, split=path.stem,
                                       source=str(path), line=line, extra={"mids": list(mids)}))
            if not header_seen:
                raise ValueError(f"{path}: not an AudioSet segment list (no '# YTID, start_seconds, end_seconds, positive_labels' line)")
    if dropped:
        logger.warning("AudioSet segments: %d rows left out (%s)", len(dropped), ParseResult([], [], dropped=dropped).summary()["dropped"])
    return ParseResult(records=records, labels=names, multi_label=True, dropped=dropped)
