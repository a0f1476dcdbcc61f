"""VGGSound: ~200k ten-second YouTube clips, 309 classes, single label.

``vggsound.csv`` as published: no header, one clip a line::

    ---g-f_I2yQ,1,people marching,test

Columns: YouTube id, start (integer seconds), label, split (``train`` or ``test``); labels
containing commas are double-quoted (``"bird chirping, tweeting"``). Every clip is the 10 s
from its start. Class ids are the label names sorted, taken over the whole file (both
splits), so a train and a test set prepared separately share their ids.

Protocol: top-1 and top-5 accuracy and one-vs-rest mAP on the test split.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path
from typing import Iterator

from zorro.data.annotations.records import AnnotationReader, ParseResult, SegmentRow, check_on_error
from zorro.data.registry import DatasetSpec, Protocol

logger = logging.getLogger(__name__)

__all__ = ["VGGSound", "read_vggsound", "VGGSOUND_CLIP_SECONDS", "VGGSOUND_SPLITS", "SPEC"]

VGGSOUND_CLIP_SECONDS = 10.0  # every VGGSound clip is the 10 s after its start
VGGSOUND_SPLITS = ("train", "test")


class VGGSound(AnnotationReader):
    """``vggsound.csv``, streamed (see :class:`AnnotationReader`).

    Args:
        path: the file.
        split: keep only this split (``"train"`` or ``"test"``); None keeps both. Rows of the
            other split are counted in ``filtered``.
        on_error: ``"raise"`` a ValueError at the first unusable row (wrong field count,
            non-integer start, empty id or label, unknown split), or ``"skip"`` it.

    Rows have ids ``"{ytid}_{start}"`` and windows ``[start, start + 10]`` s.
    """

    duplicate_reason = "duplicate clip"

    def __init__(self, path: str | Path, *, split: str | None = None, on_error: str = "raise") -> None:
        check_on_error(on_error)
        if split is not None and split not in VGGSOUND_SPLITS:
            raise ValueError(f"split must be one of {VGGSOUND_SPLITS} or None, got {split!r}")
        self.path = Path(path)
        super().__init__([str(self.path)], on_error)
        self.split = split
        self._names: set[str] = set()

    def labels(self) -> list[str]:
        """The label names of every usable row of the file (both splits), sorted."""
        return sorted(self._names)

    def _rows(self) -> Iterator[SegmentRow]:
        path = self.path
        if not path.is_file():
            raise FileNotFoundError(f"VGGSound annotation file {path} does not exist")
        self._names = set()
        dropped = self.dropped
        source = str(path)
        kept = 0
        present: set[str] = set()
        new = tuple.__new__
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                self.rows += 1
                if len(row) != 4:
                    dropped(path, line, "malformed row", f"expected 4 fields (ytid,start_seconds,label,split), got {len(row)}: {row!r}")
                    continue
                ytid, raw_start, label, row_split = (c.strip() for c in row)
                try:
                    start = int(raw_start)
                except ValueError:
                    dropped(path, line, "malformed row", f"start_seconds must be an integer, got {raw_start!r}")
                    continue
                if not ytid or not label or start < 0:
                    dropped(path, line, "malformed row", f"need a YouTube id, a label and start >= 0, got {row!r}")
                    continue
                if row_split not in VGGSOUND_SPLITS:
                    dropped(path, line, "malformed row", f"split must be one of {VGGSOUND_SPLITS}, got {row_split!r}")
                    continue
                self._names.add(label)
                present.add(row_split)
                if self.split is not None and row_split != self.split:
                    self.filtered[f"split is not {self.split}"] += 1
                    continue
                kept += 1
                yield new(SegmentRow, (f"{ytid}_{start}", (label,), ytid, float(start), float(start) + VGGSOUND_CLIP_SECONDS,
                                       row_split, None, None, source, line, None))
        if not self._names:
            raise ValueError(f"{path}: no usable row")
        if self.split is not None and not kept:
            raise ValueError(f"{path}: no row has split {self.split!r}; the split values present are {sorted(present)}")


def read_vggsound(path: str | Path, *, split: str | None = None, on_error: str = "raise") -> ParseResult:
    """Read ``vggsound.csv`` into memory (:class:`VGGSound`).

    Returns:
        a :class:`ParseResult` (single label); record ids are ``"{ytid}_{start}"``, windows
        ``[start, start + 10]`` s; a clip already listed is dropped as ``"duplicate clip"``.

    Raises:
        ValueError: as described for ``on_error`` (with the line number); a split name
            outside :data:`VGGSOUND_SPLITS`; a file without any row.
        FileNotFoundError: no such file.
    """
    res = VGGSound(path, split=split, on_error=on_error).read()
    if res.dropped:
        logger.warning("VGGSound: %d rows left out of %s", len(res.dropped), path)
    return res


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", required=True, help="vggsound.csv (no header: ytid,start_seconds,label,split)")
    p.add_argument("--split", required=True, choices=VGGSOUND_SPLITS, help="the split to prepare")


def _open_reader(args: argparse.Namespace, on_error: str) -> VGGSound:
    return VGGSound(args.csv, split=args.split, on_error=on_error)


SPEC = DatasetSpec(
    name="vggsound",
    title="VGGSound",
    summary="VGGSound from vggsound.csv",
    description="Prepared shards of one VGGSound split; class ids are the sorted label names of the whole csv.",
    multi_label=False,
    templates=("{ytid}_{start:06d}", "{ytid}"),
    fields=("id", "ytid", "start", "end", "label", "split"),
    duration=10.0,
    protocol=Protocol(metrics="single_label", ks=(1, 5), with_map=True, headline="top1",
                      summary="top-1, top-5 and one-vs-rest mAP on the test split"),
    add_arguments=_add_arguments,
    open_reader=_open_reader,
    splits=VGGSOUND_SPLITS,
    class_ids="the label names sorted, over the whole file",
)
