"""ESC-50: 2,000 five-second environmental recordings, 50 classes, five folds, audio only.

``meta/esc50.csv`` as published::

    filename,fold,target,category,esc10,src_file,take
    1-100032-A-0.wav,1,0,dog,True,100032,A

The clips are 44.1 kHz mono wav files in ``audio/``. Class ids follow the ``target``
column; the names are the ``category`` column. Protocol: five-fold cross-validation on the
predefined folds (train on four, test on the fifth), accuracy reported as the mean and
standard deviation over the folds (``zorro cv``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterator

from zorro.data.annotations.records import AnnotationReader, ClassIndex, ParseResult, SegmentRow, check_folds, check_on_error
from zorro.data.registry import DatasetSpec, Protocol

logger = logging.getLogger(__name__)

__all__ = ["ESC50", "read_esc50", "ESC50_HEADER", "ESC50_FOLDS", "SPEC"]

ESC50_HEADER = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
ESC50_FOLDS = (1, 2, 3, 4, 5)


class ESC50(AnnotationReader):
    """``meta/esc50.csv``, streamed (see :class:`AnnotationReader`).

    Args:
        path: the file.
        folds: keep only these folds (None: all five); others are counted in ``filtered``.
        esc10: keep only the ESC-10 subset (rows whose ``esc10`` column is True); the class
            ids are then the ESC-10 classes in ``target`` order.
        on_error: ``"raise"`` a ValueError at the first unusable row (wrong field count,
            non-integer fold or target, a fold outside 1..5), or ``"skip"`` it.

    Row ids are the file names, ``fold`` set, ``start``/``end`` None (the whole file),
    ``extra`` holds ``target``, ``esc10``, ``src_file``, ``take``.
    """

    duplicate_reason = "duplicate file"

    def __init__(self, path: str | Path, *, folds: tuple[int, ...] | None = None, esc10: bool = False,
                 on_error: str = "raise") -> None:
        check_on_error(on_error)
        check_folds(folds, ESC50_FOLDS)
        self.path = Path(path)
        super().__init__([str(self.path)], on_error)
        self.folds = folds
        self.esc10 = bool(esc10)
        self._labels: list[str] = []

    def labels(self) -> list[str]:
        """The category names in ``target`` order (of the ESC-10 targets with ``esc10``)."""
        return list(self._labels)

    def _rows(self) -> Iterator[SegmentRow]:
        path, dropped, source = self.path, self.dropped, str(self.path)
        classes = ClassIndex("target", "category")
        esc10_targets: set[int] = set()
        usable = 0
        for line, row in self._headed_csv_rows(path, ESC50_HEADER, "ESC-50", "meta file"):
            filename, raw_fold, raw_target, category, raw_esc10, src_file, take = row
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
            classes.add(path, line, target, category)
            usable += 1
            is_esc10 = raw_esc10 == "True"
            if is_esc10:
                esc10_targets.add(target)
            if self.esc10 and not is_esc10:
                self.filtered["not in ESC-10"] += 1
                continue
            if self.folds is not None and fold not in self.folds:
                self.filtered["fold not selected"] += 1
                continue
            yield SegmentRow(filename, (category,), fold=fold, filename=filename, source=source, line=line,
                             extra={"target": target, "esc10": is_esc10, "src_file": src_file, "take": take})
        if not usable:
            raise ValueError(f"{path}: no usable row")
        if self.esc10:
            if not esc10_targets:
                raise ValueError(f"{path}: no row is marked esc10=True")
            self._labels = [classes.name_of[t] for t in sorted(esc10_targets)]
        else:
            self._labels = classes.labels(path, "targets", "targets")


def read_esc50(path: str | Path, *, folds: tuple[int, ...] | None = None, esc10: bool = False, on_error: str = "raise") -> ParseResult:
    """Read ``meta/esc50.csv`` into memory (:class:`ESC50`).

    Returns:
        a :class:`ParseResult` (single label); record ids are the file names, ``fold`` set,
        ``start``/``end`` None (the whole file), ``extra`` holds ``target``, ``esc10``,
        ``src_file``, ``take``; a file name already listed is dropped as ``"duplicate file"``.

    Raises:
        ValueError: a different header; an unusable row (with its line number); a target
            used for two categories or a category with two targets; targets that are not
            ``0..C-1``.
        FileNotFoundError: no such file.
    """
    res = ESC50(path, folds=folds, esc10=esc10, on_error=on_error).read()
    if res.dropped:
        logger.warning("ESC-50: %d rows left out of %s", len(res.dropped), path)
    return res


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--meta", required=True, help="meta/esc50.csv")
    p.add_argument("--esc10", action="store_true", help="only the ESC-10 subset")


def _open_reader(args: argparse.Namespace, on_error: str) -> ESC50:
    return ESC50(args.meta, esc10=args.esc10, on_error=on_error)


SPEC = DatasetSpec(
    name="esc50",
    title="ESC-50",
    summary="ESC-50 from meta/esc50.csv (audio only, five folds)",
    description="Prepared shards of ESC-50: every clip, with its fold in the sample meta and the shard index "
                "(cross-validate with `zorro cv`).",
    multi_label=False,
    templates=("{filename}",),
    fields=("id", "filename", "stem", "label", "fold", "target", "src_file", "take"),
    duration=5.0,
    protocol=Protocol(metrics="single_label", ks=(1,), headline="top1", folds=ESC50_FOLDS,
                      summary="five-fold cross-validation on the predefined folds: accuracy, mean and std over the folds"),
    add_arguments=_add_arguments,
    open_reader=_open_reader,
    video=False,
    clips=(),
    index_fields=("fold",),
    class_ids="the target column",
)
