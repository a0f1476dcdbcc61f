"""Typed records shared by the annotation parsers, and the report of what a parser left out.

A parser turns one published annotation file into :class:`Segment` records (one per clip)
and a list of :class:`Dropped` rows (rows it could not use, each with the file, the 1-based
line number and the reason). Nothing is left out silently: :meth:`ParseResult.summary`
counts the dropped rows per reason, and the ``zorro prepare`` dataset commands write the
whole list into ``dataset.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Segment", "Dropped", "DroppedRows", "ParseResult", "check_on_error", "ON_ERROR"]

#: what a parser does with a row it cannot use: raise ``ValueError`` or drop and count it
ON_ERROR = ("raise", "skip")


def check_on_error(on_error: str) -> str:
    """Validate an ``on_error`` argument (one of :data:`ON_ERROR`)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


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
        out: dict[str, Any] = {"id": self.id}
        for name in ("ytid", "start", "end", "split", "fold", "filename"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)
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
    <detail>")`` at once; with ``"skip"`` it appends the row and the parser goes on.
    """

    def __init__(self, on_error: str):
        super().__init__()
        self.on_error = check_on_error(on_error)

    def __call__(self, source: object, line: int, reason: str, detail: str) -> None:
        """Report that ``line`` (1-based) of file ``source`` is unusable for ``reason``."""
        if self.on_error == "raise":
            raise ValueError(f"{source}:{line}: {reason}: {detail}")
        self.append(Dropped(str(source), line, reason, detail))


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
        return {
            "records": len(self.records),
            "dropped": dict(Counter(d.reason for d in self.dropped)),
            "filtered": dict(self.filtered),
        }
