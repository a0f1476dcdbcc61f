"""AudioSet: 2,084,320 ten-second YouTube segments, 527 classes, multi-label.

Annotation files as Google publishes them:

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
  A segment's ``split`` is the stem of the file it comes from (``eval_segments``).

Protocol: mAP (with mAUC and d-prime) on ``eval_segments.csv``, over the classes that have
at least one positive evaluation clip.
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from zorro.data.annotations.records import AnnotationReader, ParseResult, SegmentRow, check_on_error
from zorro.data.registry import DatasetSpec, Protocol

logger = logging.getLogger(__name__)

__all__ = ["AudioSetClass", "AudioSetSegments", "read_audioset_labels", "read_audioset_segments", "audioset_segment_id",
           "class_names", "SPEC"]

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


class AudioSetSegments(AnnotationReader):
    """One or more AudioSet segment CSVs, streamed (see :class:`AnnotationReader`).

    Args:
        paths: the segment file(s), read in the order given.
        classes: the class list (:func:`read_audioset_labels`); labels are its display names.
        on_error: ``"raise"`` a ValueError at the first unusable row, or ``"skip"`` it and
            count it. Unusable: a malformed row (wrong field count, non-numeric or inverted
            times, empty id or labels), a MID absent from ``classes``.

    Rows are ``SegmentRow`` with ``id`` :func:`audioset_segment_id`, the display names as
    labels (each once, in the row's order), ``split`` the file's stem and ``extra`` holding
    the row's ``mids`` (shared by the rows of one label set: read it, do not change it). Rows in the published layout are split directly and their times and label sets
    parsed once each (AudioSet's 2M rows in seconds); any other row goes through the ``csv``
    module.
    """

    multi_label = True
    duplicate_reason = "duplicate segment"

    def __init__(self, paths: str | Path | Iterable[str | Path], classes: Sequence[AudioSetClass], *, on_error: str = "raise") -> None:
        check_on_error(on_error)
        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("AudioSet: no segment file given")
        super().__init__([str(p) for p in self.paths], on_error)
        self.classes = list(classes)
        self._names = class_names(self.classes)
        self._by_mid = {c.mid: self._names[c.index] for c in self.classes}

    def labels(self) -> list[str]:
        """The display names in class-id order (made unique, see :func:`class_names`)."""
        return list(self._names)

    def _slow_fields(self, text: str) -> list[str]:
        """A row that does not have the published layout, split by the ``csv`` module."""
        return [c.strip() for c in next(csv.reader([text], skipinitialspace=True))]

    def _rows(self) -> Iterator[SegmentRow]:
        by_mid = self._by_mid
        dropped = self.dropped
        new = tuple.__new__
        # rows repeat their start/end texts and label sets: parse each once (bounded caches)
        times: dict[str, float] = {}
        label_sets: dict[str, tuple[tuple[str, ...], dict[str, list[str]]]] = {}
        for path in self.paths:
            if not path.is_file():
                raise FileNotFoundError(f"AudioSet segment file {path} does not exist")
            source, split = str(path), path.stem
            header_seen = False
            with open(path, newline="", encoding="utf-8") as f:
                for line, raw in enumerate(f, 1):
                    fields = None
                    if header_seen:  # the published layout, inline (the split and checks of _published_fields)
                        parts = raw.split(", ", 3)
                        if len(parts) == 4:
                            ytid, raw_start, raw_end, raw_labels = parts
                            if (raw_labels[:1] == '"' and ytid and "," not in ytid and " " not in ytid and '"' not in ytid
                                    and "#" not in ytid and " " not in raw_start and " " not in raw_end):
                                raw_labels = raw_labels.rstrip("\r\n")
                                if len(raw_labels) >= 2 and raw_labels[-1] == '"':
                                    raw_labels = raw_labels[1:-1]
                                    if '"' not in raw_labels and " " not in raw_labels:
                                        fields = parts
                    if fields is None:
                        text = raw.rstrip("\r\n")
                        if not text or text.isspace():
                            continue
                        if text.lstrip().startswith("#"):
                            cols = next(csv.reader([text], skipinitialspace=True))
                            if tuple(c.strip().lstrip("#").strip().lower() for c in cols) == _SEGMENT_COLUMNS:
                                header_seen = True
                            continue
                        if not header_seen:
                            raise ValueError(
                                f"{path}:{line}: not an AudioSet segment list: expected '#' header lines ending with "
                                f"'# YTID, start_seconds, end_seconds, positive_labels' before the first row"
                            )
                        row = self._slow_fields(text)
                        if len(row) != 4:
                            self.rows += 1
                            dropped(path, line, "malformed row", f"expected 4 fields (YTID, start, end, labels), got {len(row)}: {row!r}")
                            continue
                        ytid, raw_start, raw_end, raw_labels = row
                    self.rows += 1
                    start, end = times.get(raw_start), times.get(raw_end)
                    if start is None or end is None:
                        try:
                            start, end = float(raw_start), float(raw_end)
                        except ValueError:
                            dropped(path, line, "malformed row", f"start/end must be numbers, got {raw_start!r}, {raw_end!r}")
                            continue
                        if len(times) < 1 << 14:
                            times[raw_start], times[raw_end] = start, end
                    if not ytid or not (0 <= start < end):
                        dropped(path, line, "malformed row", f"need a YTID and 0 <= start < end, got {ytid!r}, {start}, {end}")
                        continue
                    known = label_sets.get(raw_labels)
                    if known is None:
                        mids = raw_labels.split(",")
                        if "" in mids or " " in raw_labels:
                            mids = [x.strip() for x in mids if x.strip()]
                        if not mids:
                            dropped(path, line, "malformed row", "no label")
                            continue
                        unknown = [x for x in mids if x not in by_mid]
                        if unknown:
                            dropped(path, line, "unknown MID",
                                    f"{unknown} not in the class list ({len(by_mid)} classes): the label file does not match the segments")
                            continue
                        known = (tuple(dict.fromkeys([by_mid[x] for x in mids])), {"mids": mids})
                        if len(label_sets) < 1 << 17:
                            label_sets[raw_labels] = known
                    labels, extra = known
                    if len(raw_start) > 4 and raw_start[-4] == "." and raw_start[0].isdigit() and (raw_start[0] != "0" or raw_start[1] == "."):
                        key = ytid + "_" + raw_start  # already "{start:.3f}" (the published layout): no float formatting
                    else:
                        key = f"{ytid}_{start:.3f}"
                    # rows with the same label set share its extra fields: treat them as read-only
                    yield new(SegmentRow, (key, labels, ytid, start, end, split, None, None, source, line, extra))
            if not header_seen:
                raise ValueError(f"{path}: not an AudioSet segment list (no '# YTID, start_seconds, end_seconds, positive_labels' line)")


def read_audioset_segments(
    paths: str | Path | Iterable[str | Path],
    classes: Sequence[AudioSetClass],
    *,
    on_error: str = "raise",
) -> ParseResult:
    """Read one or more AudioSet segment CSVs into memory (:class:`AudioSetSegments`).

    Returns:
        a :class:`ParseResult` (``multi_label=True``); each record's ``extra`` holds its
        ``mids``; ``split`` is the file's stem (e.g. ``"eval_segments"``). A segment (YTID
        and start) already listed is dropped as ``"duplicate segment"``.

    Raises:
        ValueError: a file without the AudioSet header lines, or (``on_error="raise"``) an
            unusable row, with the file and line number. An unknown MID is reported as a
            label file that does not match the segments.
        FileNotFoundError: a file does not exist.
    """
    res = AudioSetSegments(paths, classes, on_error=on_error).read()
    if res.dropped:
        logger.warning("AudioSet segments: %d rows left out (%s)", len(res.dropped), res.summary()["dropped"])
    return res


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segments", nargs="+", required=True, metavar="CSV",
                   help="segment list(s) as published, e.g. balanced_train_segments.csv unbalanced_train_segments.csv; "
                        "a segment's split is its file's stem")
    p.add_argument("--labels", required=True, help="class_labels_indices.csv")


def _open_reader(args: argparse.Namespace, on_error: str) -> AudioSetSegments:
    reader = AudioSetSegments(args.segments, read_audioset_labels(args.labels), on_error=on_error)
    reader.files.append(str(args.labels))
    return reader


SPEC = DatasetSpec(
    name="audioset",
    title="AudioSet",
    summary="AudioSet from its segment CSVs and class_labels_indices.csv",
    description="Prepared shards of AudioSet: segment CSVs (balanced/unbalanced/eval) as published, class ids from "
                "class_labels_indices.csv, multi-label. Streams the 2M-row unbalanced list in bounded memory.",
    multi_label=True,
    templates=("{ytid}_{start:06d}", "Y{ytid}", "{ytid}"),
    fields=("id", "ytid", "start", "end", "split"),
    duration=10.0,
    protocol=Protocol(metrics="multi_label", headline="mAP",
                      summary="mAP, mAUC and d-prime on eval_segments.csv over the classes with a positive clip"),
    add_arguments=_add_arguments,
    open_reader=_open_reader,
    splits=("balanced_train_segments", "unbalanced_train_segments", "eval_segments"),
    class_ids="the index column of class_labels_indices.csv; label names are the display names",
)
