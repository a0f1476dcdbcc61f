"""ESC-50's ``meta/esc50.csv`` as published::

    filename,fold,target,category,esc10,src_file,take
    1-100032-A-0.wav,1,0,dog,True,100032,A

2,000 five-second clips (44.1 kHz mono wav in ``audio/``), 50 classes, five folds for
cross-validation. Class ids follow the ``target`` column; the names are the ``category``
column.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from zorro.data.annotations.records import DroppedRows, ParseResult, Segment, check_on_error

logger = logging.getLogger(__name__)

__all__ = ["read_esc50", "ESC50_HEADER", "ESC50_FOLDS"]

ESC50_HEADER = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = (1, 2, 3, 4, 5)


def read_esc50(path: str | Path, *, folds: tuple[int, ...] | None = None, esc10: bool = False, on_error: str = "raise") -> ParseResult:
    """Read ``meta/esc50.csv``.

    Args:
        path: the file.
        folds: keep only these folds (None: all five); others are counted in ``result.filtered``.
        esc10: keep only the ESC-10 subset (rows whose ``esc10`` column is True); the class
            ids are then the ESC-10 classes in ``target`` order.
        on_error: ``"raise"`` a ValueError at the first unusable row (wrong field count,
            non-integer fold or target, a fold outside 1..5, a file name listed twice), or
            ``"skip"`` it and count it in ``result.dropped``.

    Returns:
        a :class:`ParseResult` (single label); record ids are the file names, ``fold`` set,
        ``start``/``end`` None (the whole file), ``extra`` holds ``target``, ``esc10``,
        ``src_file``, ``take``.

    Raises:
        ValueError: a different header; an unusable row (with its line number); a target
            used for two categories or a category with two targets; targets that are not
            ``0..C-1``.
        FileNotFoundError: no such file.
    """
    check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ESC-50 meta file {path} does not exist")
    if folds is not None:
        bad_folds = [f for f in folds if f not in ESC50_FOLDS]
        if bad_folds or not folds:
            raise ValueError(f"folds must be a non-empty subset of {ESC50_FOLDS}, got {folds!r}")
    records: list[Segment] = []
    dropped = DroppedRows(on_error)
    seen: dict[str, int] = {}
    name_of: dict[int, str] = {}
    target_of: dict[str, int] = {}


    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != ESC50_HEADER:
            raise ValueError(f"{path}: expected the ESC-50 header {','.join(ESC50_HEADER)!r}, got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(ESC50_HEADER):
                dropped(path, line, "malformed row", f"expected {len(ESC50_HEADER)} fields, got {len(row)}: {row!r}")
                continue
            filename, raw_fold, raw_target, category, raw_esc10, src_file, take = (c.strip() for c in row)
            try:
                fold, target = int(raw_fold), int(raw_target)
            except ValueError:
                dropped(path, line, "malformed row", f"fold and target must be integers, got {raw_fold!r}, {raw_target!r}")
                continue
            if fold not in ESC50_FOLDS or target < 0 or not filename or not category:
                dropped(path, line, "malformed row", f"need a file name, a category, fold in 1..5 and target >= 0, got {row!r}")
                continue
            if raw_esc10 not in ("True", "False"):
                dropped(path, line, "malformed row", f"esc10 must be True or False, got {raw_esc10!r}")
                continue
            if filename in seen:
                dropped(path, line, "duplicate file", f"{filename} already listed at line {seen[filename]}")
                continue
            known_name, known_target = name_of.setdefault(target, category), target_of.setdefault(category, target)
            if known_name != category or known_target != target:
                raise ValueError(
                    f"{path}:{line}: target {target} / category {category!r} contradicts earlier rows "
                    f"(target {target} is {known_name!r}, {category!r} is target {known_target})"
                )
            seen[filename] = line
            records.append(Segment(id=filename, labels=(category,), fold=fold, filename=filename, source=str(path), line=line,
                                   extra={"target": target, "esc10": raw_esc10 == "True", "src_file": src_file, "take": take}))
    if not records:
        raise ValueError(f"{path}: no usable row")
    filtered: dict[str, int] = {}
    if esc10:
        kept = [r for r in records if r.extra["esc10"]]
        filtered["not in ESC-10"] = len(records) - len(kept)
        records = kept
        if not records:
            raise ValueError(f"{path}: no row is marked esc10=True")
        name_of = {r.extra["target"]: r.labels[0] for r in records}
        labels = [name_of[t] for t in sorted(name_of)]
    else:
        if sorted(name_of) != list(range(len(name_of))):
            missing = sorted(set(range(max(name_of) + 1)) - set(name_of))[:5]
            raise ValueError(f"{path}: targets must be 0..C-1 with every class present; missing targets {missing}")
        labels = [name_of[t] for t in range(len(name_of))]
    if folds is not None:
        kept = [r for r in records if r.fold in folds]
        filtered["fold not selected"] = len(records) - len(kept)
        records = kept
    if dropped:
        logger.warning("ESC-50: %d rows left out of %s", len(dropped), path)
    return ParseResult(records=records, labels=labels, multi_label=False, dropped=dropped, filtered=filtered)
