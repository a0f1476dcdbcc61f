"""Typed records shared by the annotation parsers, and the report of what a parser left out.

A parser turns one published annotation file into :class:`Segment` records (one per clip)
and a list of :class:`Dropped` rows (rows it could not use, each with the file, the 1-based
line number and the reason). Nothing is left out silently: :meth:`ParseResult.summary`
counts the dropped rows per reason, and the ``zorro prepare`` dataset commands write the
whole list into ``dropped_rows.jsonl`` beside ``dataset.json``.

For files of millions of rows (AudioSet's 2,041,789-row ``unbalanced_train_segments.csv``)
an :class:`AnnotationReader` streams: one pass yields :class:`SegmentRow` tuples (the fields
of :class:`Segment`, cheap to make), counts what it leaves out and hands dropped rows to a
sink instead of keeping them, so memory does not grow with the rows of the file.
:meth:`AnnotationReader.read` gives the in-memory :class:`ParseResult` of the same pass.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

__all__ = ["Segment", "SegmentRow", "segment_meta", "Dropped", "DroppedRows", "ParseResult", "AnnotationReader",
           "check_on_error", "ON_ERROR", "check_folds", "ClassIndex"]

#: what a parser does with a row it cannot use: raise ``ValueError`` or drop and count it
ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` argument (one of :data:`ON_ERROR`)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def check_folds(folds: tuple[int, ...] | None, allowed: tuple[int, ...]) -> None:
    """Validate a ``folds`` selection: None (every fold) or a non-empty subset of ``allowed``."""
    if folds is not None and (not folds or any(f not in allowed for f in folds)):
        raise ValueError(f"folds must be a non-empty subset of {allowed}, got {folds!r}")


class ClassIndex:
    """The classes of a file whose rows name each class twice, by an integer id and by a name
    (ESC-50's ``target``/``category``, UrbanSound8K's ``classID``/``class``).

    Args:
        id_column, name_column: the two columns' names, for the messages.
    """

    def __init__(self, id_column: str, name_column: str) -> None:
        self.id_column, self.name_column = id_column, name_column
        self.name_of: dict[int, str] = {}
        self._id_of: dict[str, int] = {}

    def add(self, path: Path, line: int, class_id: int, name: str) -> None:
        """Record row ``line``'s pair; ``ValueError`` when it contradicts an earlier row (the id
        named otherwise, or the name with another id)."""
        known_name, known_id = self.name_of.setdefault(class_id, name), self._id_of.setdefault(name, class_id)
        if known_name != name or known_id != class_id:
            i, n = self.id_column, self.name_column
            raise ValueError(f"{path}:{line}: {i} {class_id} / {n} {name!r} contradicts earlier rows "
                             f"({i} {class_id} is {known_name!r}, {name!r} is {i} {known_id})")

    def labels(self, path: Path, ids_must: str, missing_ids: str) -> list[str]:
        """The names in id order; ``ValueError`` unless the ids are ``0..C-1`` with every class
        present (``"{ids_must} must be 0..C-1 ...; missing {missing_ids} [...]"``)."""
        if sorted(self.name_of) != list(range(len(self.name_of))):
            missing = sorted(set(range(max(self.name_of) + 1)) - set(self.name_of))[:5]
            raise ValueError(f"{path}: {ids_must} must be 0..C-1 with every class present; missing {missing_ids} {missing}")
        return [self.name_of[c] for c in range(len(self.name_of))]


@dataclass(frozen=True)
class Segment:
    """One annotated clip of a published dataset.

    Attributes:
        id: key unique within the annotation file(s), e.g. ``"--PJHxphWEs_30.000"``
            (AudioSet), ``"---g-f_I2yQ_1"`` (VGGSound) or ``"1-100032-A-0.wav"`` (ESC-50).
        labels: class names (display names, in the dataset's vocabulary); one for the
            single-label datasets, one or more for AudioSet.
        ytid: YouTube id, or None (ESC-50).
        start: start of the annotated window in the source video (s), or None (whole file).
        end: end of the annotated window (s), or None (whole file).
        split: ``"train"``/``"test"``/``"validate"``/... as the annotation says, or None.
        fold: cross-validation fold (ESC-50: 1..5), or None.
        filename: file name given by the annotation (ESC-50), or None.
        source: annotation file the record came from.
        line: 1-based line number in ``source``.
        extra: further annotation fields kept verbatim (e.g. AudioSet MIDs, ESC-50 ``take``).
    """

    id: str
    labels: tuple[str, ...]
    ytid: str | None = None
    start: float | None = None
    end: float | None = None
    split: str | None = None
    fold: int | None = None
    filename: str | None = None
    source: str = ""
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def duration(self) -> float | None:
        """Length of the annotated window (s), or None without one."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def meta(self) -> dict[str, Any]:
        """The annotation fields to keep with a prepared sample (JSON-ready, Nones left out)."""
        return segment_meta(self)

    @classmethod
    def from_row(cls, row: "SegmentRow") -> "Segment":
        """The :class:`Segment` of a streamed :class:`SegmentRow`."""
        extra = {k: list(v) if isinstance(v, list) else v for k, v in (row.extra or {}).items()}  # own copies of shared values
        return cls(*row[:-1], extra=extra)


class SegmentRow(NamedTuple):
    """What an :class:`AnnotationReader` yields: the fields of :class:`Segment`, in its
    order, as a tuple (a fraction of a dataclass's cost to make, for files of millions of
    rows). ``extra`` may be None (no further fields) and may be shared between rows (read
    it; :meth:`Segment.from_row` makes an own copy)."""

    id: str
    labels: tuple[str, ...]
    ytid: str | None = None
    start: float | None = None
    end: float | None = None
    split: str | None = None
    fold: int | None = None
    filename: str | None = None
    source: str = ""
    line: int = 0
    extra: dict[str, Any] | None = None


_META_FIELDS = ("ytid", "start", "end", "split", "fold", "filename")


def segment_meta(seg: Segment | SegmentRow) -> dict[str, Any]:
    """The annotation fields kept with a prepared sample (JSON-ready, Nones left out): ``id``,
    ``ytid``, ``start``, ``end``, ``split``, ``fold``, ``filename`` and the ``extra`` fields."""
    out: dict[str, Any] = {"id": seg.id}
    for name in _META_FIELDS:
        value = getattr(seg, name)
        if value is not None:
            out[name] = value
    if seg.extra:
        out.update(seg.extra)
    return out


@dataclass(frozen=True)
class Dropped:
    """A row a parser could not use: ``source`` file, 1-based ``line``, ``reason`` (a short
    category such as ``"malformed row"``) and ``detail`` (what exactly was wrong)."""

    source: str
    line: int
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"source": self.source, "line": self.line, "reason": self.reason, "detail": self.detail}


class DroppedRows(list):
    """The rows a parser left out, as :class:`Dropped` records; calling it reports one.

    With ``on_error="raise"`` a call raises ``ValueError("<file>:<line>: <reason>:
    <detail>")`` at once; with ``"skip"`` it appends the row and the parser goes on -- or,
    with a ``sink``, hands the row to it instead of keeping it (streaming: the list stays
    empty). :attr:`counts` counts the rows per reason either way.
    """

    def __init__(self, on_error: str, sink: Callable[[Dropped], None] | None = None):
        super().__init__()
        self.on_error = check_on_error(on_error)
        self.sink = sink
        self.counts: Counter = Counter()

    def __call__(self, source: object, line: int, reason: str, detail: str) -> None:
        """Report that ``line`` (1-based) of file ``source`` is unusable for ``reason``."""
        if self.on_error == "raise":
            raise ValueError(f"{source}:{line}: {reason}: {detail}")
        self.counts[reason] += 1
        row = Dropped(str(source), line, reason, detail)
        if self.sink is None:
            self.append(row)
        else:
            self.sink(row)

    @property
    def total(self) -> int:
        """Rows dropped so far (kept or handed to the sink)."""
        return sum(self.counts.values())


@dataclass
class ParseResult:
    """Records of one or more annotation files, the vocabulary, and the dropped rows.

    Attributes:
        records: the usable clips, in file order.
        labels: the class names in class-id order.
        multi_label: True when a clip may carry several labels (AudioSet).
        dropped: rows left out, with reasons.
        filtered: rows deliberately not selected (another split or a class outside the
            chosen subset), counted per reason; they are not errors.
    """

    records: list[Segment]
    labels: list[str]
    multi_label: bool = False
    dropped: list[Dropped] = field(default_factory=list)
    filtered: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts: records kept, rows dropped per reason, rows filtered per reason."""
        counts = getattr(self.dropped, "counts", None)
        return {
            "records": len(self.records),
            "dropped": dict(counts if counts is not None and sum(counts.values()) >= len(self.dropped) else Counter(d.reason for d in self.dropped)),
            "filtered": dict(self.filtered),
        }


class AnnotationReader:
    """One dataset's annotation file(s), read as a stream of :class:`SegmentRow` (see the
    module docstring). Subclasses implement :meth:`_rows` and :meth:`labels`.

    Args:
        files: the annotation files read (recorded in the prepared folder).
        on_error: ``"raise"`` at the first unusable row, or ``"skip"`` it (see :class:`DroppedRows`).

    Attributes:
        dropped: the rows left out (a :class:`DroppedRows`; give it a ``sink`` to stream).
        filtered: rows deliberately not selected (another split, fold or class), per reason.
        rows: data rows read (header and blank lines not counted) in the last pass.
        multi_label: a clip may carry several labels.
        duplicate_reason: the reason reported for a clip listed twice.
    """

    multi_label = False
    duplicate_reason = "duplicate clip"

    def __init__(self, files: list[str], on_error: str = "raise") -> None:
        self.files = [str(f) for f in files]
        self.dropped = DroppedRows(on_error)
        self.filtered: Counter = Counter()
        self.rows = 0

    def _rows(self) -> Iterator[SegmentRow]:
        raise NotImplementedError

    def _headed_csv_rows(self, path: Path, header: tuple[str, ...], dataset: str,
                         file_kind: str = "meta file") -> Iterator[tuple[int, list[str]]]:
        """The data rows of a CSV file that must start with ``header``: ``(line, stripped
        fields)`` of every non-blank row with ``len(header)`` fields, counted in :attr:`rows`;
        rows of another width go to :attr:`dropped` as ``"malformed row"``.

        Raises:
            FileNotFoundError: ``path`` is not a file.
            ValueError: the first row is not ``header``.
        (``dataset`` and ``file_kind`` name the file in the messages, e.g. "ESC-50 meta file".)
        """
        if not path.is_file():
            raise FileNotFoundError(f"{dataset} {file_kind} {path} does not exist")
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            if first is None or tuple(h.strip() for h in first) != header:
                raise ValueError(f"{path}: expected the {dataset} header {','.join(header)!r}, got {first!r}")
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                self.rows += 1
                if len(row) != len(header):
                    self.dropped(path, line, "malformed row", f"expected {len(header)} fields, got {len(row)}: {row!r}")
                    continue
                yield line, [c.strip() for c in row]

    def __iter__(self) -> Iterator[SegmentRow]:
        """One pass over the files: the usable rows in file order (duplicates included: the
        caller decides on them by ``id``, see :meth:`read`)."""
        self.rows = 0
        self.filtered = Counter()
        return self._rows()

    def labels(self) -> list[str]:
        """The class names in class-id order; valid after a complete pass."""
        raise NotImplementedError

    def read(self) -> ParseResult:
        """The whole file(s) in memory: records in file order, later rows whose ``id`` was
        already listed dropped as :attr:`duplicate_reason` ("<key> already listed at
        <file:line>")."""
        records: list[Segment] = []
        seen: dict[str, str] = {}
        for row in self:
            where = seen.get(row.id)
            if where is not None:
                self.dropped(row.source, row.line, self.duplicate_reason, f"{row.id} already listed at {where}")
                continue
            seen[row.id] = f"{_name(row.source)}:{row.line}"
            records.append(Segment.from_row(row))
        return ParseResult(records=records, labels=self.labels(), multi_label=self.multi_label, dropped=self.dropped,
                           filtered=dict(self.filtered))


def _name(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]
