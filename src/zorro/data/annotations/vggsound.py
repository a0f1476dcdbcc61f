"""VGGSound's ``vggsound.csv`` as published: no header, one clip a line::

    ---g-f_I2yQ,1,people marching,test

Columns: YouTube id, start (integer seconds), label, split (``train`` or ``test``); labels
containing commas are double-quoted (``"bird chirping, tweeting"``). Every clip is the 10 s
from its start. Class ids are the label names sorted, taken over the whole file (both
splits), so a train and a test set prepared separately share their ids.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from zorro.data.annotations.records import DroppedRows, ParseResult, Segment, check_on_error

logger = logging.getLogger(__name__)

__all__ = ["read_vggsound", "VGGSOUND_CLIP_SECONDS", "VGGSOUND_SPLITS"]

VGGSOUND_CLIP_SECONDS = 10.0  # every VGGSound clip is the 10 s after its start
VGGSOUND_SPLITS = ("train", "test")


def read_vggsound(path: str | Path, *, split: str | None = None, on_error: str = "raise") -> ParseResult:
    """Read ``vggsound.csv``.

    Args:
        path: the file.
        split: keep only this split (``"train"`` or ``"test"``); None keeps both. Rows of the
            other split are counted in ``result.filtered``.
        on_error: ``"raise"`` a ValueError at the first unusable row (wrong field count,
            non-integer start, empty id or label, unknown split, a clip listed twice), or
            ``"skip"`` it and count it in ``result.dropped``.

    Returns:
        a :class:`ParseResult` (single label); record ids are ``"{ytid}_{start}"``, windows
        ``[start, start + 10]`` s.

    Raises:
        ValueError: as described for ``on_error``, with the line number; a split name
            outside :data:`VGGSOUND_SPLITS`; a file without any row.
        FileNotFoundError: no such file.
    """
    check_on_error(on_error)
    if split is not None and split not in VGGSOUND_SPLITS:
        raise ValueError(f"split must be one of {VGGSOUND_SPLITS} or None, got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGSound annotation file {path} does not exist")
    rows: list[Segment] = []
    dropped = DroppedRows(on_error)
    seen: dict[str, int] = {}


    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
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
            key = f"{ytid}_{start}"
            if key in seen:
                dropped(path, line, "duplicate clip", f"{key} already listed at line {seen[key]}")
                continue
            seen[key] = line
            rows.append(Segment(id=key, labels=(label,), ytid=ytid, start=float(start), end=float(start) + VGGSOUND_CLIP_SECONDS,
                                split=row_split, source=str(path), line=line))
    if not rows:
        raise ValueError(f"{path}: no usable row")
    labels = sorted({r.labels[0] for r in rows})
    kept = [r for r in rows if split is None or r.split == split]
    filtered = {f"split is not {split}": len(rows) - len(kept)} if split is not None else {}
    if dropped:
        logger.warning("VGGSound: %d rows left out of %s", len(dropped), path)
    return ParseResult(records=kept, labels=labels, multi_label=False, dropped=dropped, filtered=filtered)
