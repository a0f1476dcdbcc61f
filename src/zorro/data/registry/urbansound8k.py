"""UrbanSound8K: 8,732 urban sound excerpts of at most 4 s, 10 classes, ten folds, audio only.

``metadata/UrbanSound8K.csv`` as published::

    slice_file_name,fsID,start,end,salience,fold,classID,class
    100032-3-0-0.wav,100032,0.0,0.317551,1,5,3,dog_bark

The excerpts are wav files (various rates and channel counts) in ``audio/fold<k>/``, so the
default name template, relative to ``--media-root audio``, is ``fold{fold}/{filename}``.
``start`` / ``end`` are the excerpt's times in the original Freesound recording ``fsID``;
the excerpt file is already cut, so they are kept in the sample meta as
``freesound_start`` / ``freesound_end`` and not used to seek. ``salience`` is 1 (foreground)
or 2 (background). Class ids follow the ``classID`` column, the names the ``class`` column.

Protocol: ten-fold cross-validation on the predefined folds (never reshuffled: excerpts of
one recording share a fold), accuracy reported as the mean and standard deviation over the
ten folds (``zorro cv``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterator

from zorro.data.annotations.records import AnnotationReader, ClassIndex, ParseResult, SegmentRow, check_folds, check_on_error
from zorro.data.registry import DatasetSpec, Protocol

logger = logging.getLogger(__name__)

__all__ = ["UrbanSound8K", "read_urbansound8k", "URBANSOUND8K_HEADER", "URBANSOUND8K_FOLDS", "SPEC"]

URBANSOUND8K_HEADER = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")
URBANSOUND8K_FOLDS = tuple(range(1, 11))


class UrbanSound8K(AnnotationReader):
    """``metadata/UrbanSound8K.csv``, streamed (see :class:`AnnotationReader`).

    Args:
        path: the file.
        folds: keep only these folds (None: all ten); others are counted in ``filtered``.
        on_error: ``"raise"`` a ValueError at the first unusable row (wrong field count,
            a non-integer fold, classID or salience, a fold outside 1..10, non-numeric
            times), or ``"skip"`` it.

    Row ids are the slice file names; ``fold`` set; ``filename`` the slice file name;
    ``start``/``end`` None (the whole excerpt); ``extra`` holds ``fsID``, ``classID``,
    ``salience``, ``freesound_start`` and ``freesound_end``.
    """

    duplicate_reason = "duplicate file"

    def __init__(self, path: str | Path, *, folds: tuple[int, ...] | None = None, on_error: str = "raise") -> None:
        check_on_error(on_error)
        check_folds(folds, URBANSOUND8K_FOLDS)
        self.path = Path(path)
        super().__init__([str(self.path)], on_error)
        self.folds = folds
        self._labels: list[str] = []

    def labels(self) -> list[str]:
        """The class names in ``classID`` order."""
        return list(self._labels)

    def _rows(self) -> Iterator[SegmentRow]:
        path, dropped, source = self.path, self.dropped, str(self.path)
        classes = ClassIndex("classID", "class")
        usable = 0
        for line, row in self._headed_csv_rows(path, URBANSOUND8K_HEADER, "UrbanSound8K", "metadata file"):
            filename, fs_id, raw_start, raw_end, raw_salience, raw_fold, raw_class_id, name = row
            try:
                fold, class_id, salience = int(raw_fold), int(raw_class_id), int(raw_salience)
                fs_start, fs_end = float(raw_start), float(raw_end)
            except ValueError:
                dropped(path, line, "malformed row",
                        f"fold, classID and salience must be integers and start/end numbers, got {row!r}")
                continue
            if fold not in URBANSOUND8K_FOLDS or class_id < 0 or not filename or not name or not fs_start < fs_end:
                dropped(path, line, "malformed row",
                        f"need a file name, a class, fold in 1..10, classID >= 0 and start < end, got {row!r}")
                continue
            classes.add(path, line, class_id, name)
            usable += 1
            if self.folds is not None and fold not in self.folds:
                self.filtered["fold not selected"] += 1
                continue
            yield SegmentRow(filename, (name,), fold=fold, filename=filename, source=source, line=line,
                             extra={"fsID": fs_id, "classID": class_id, "salience": salience,
                                    "freesound_start": fs_start, "freesound_end": fs_end})
        if not usable:
            raise ValueError(f"{path}: no usable row")
        self._labels = classes.labels(path, "classID", "classIDs")


def read_urbansound8k(path: str | Path, *, folds: tuple[int, ...] | None = None, on_error: str = "raise") -> ParseResult:
    """Read ``metadata/UrbanSound8K.csv`` into memory (:class:`UrbanSound8K`).

    Returns:
        a :class:`ParseResult` (single label, class ids the ``classID`` column); a slice
        file listed twice is dropped as ``"duplicate file"``.

    Raises:
        ValueError: a different header; an unusable row (with its line number); a classID
            used for two classes or the reverse; classIDs that are not ``0..C-1``.
        FileNotFoundError: no such file.
    """
    res = UrbanSound8K(path, folds=folds, on_error=on_error).read()
    if res.dropped:
        logger.warning("UrbanSound8K: %d rows left out of %s", len(res.dropped), path)
    return res


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--meta", required=True, help="metadata/UrbanSound8K.csv")


def _open_reader(args: argparse.Namespace, on_error: str) -> UrbanSound8K:
    return UrbanSound8K(args.meta, on_error=on_error)


SPEC = DatasetSpec(
    name="urbansound8k",
    title="UrbanSound8K",
    summary="UrbanSound8K from metadata/UrbanSound8K.csv (audio only, ten folds)",
    description="Prepared shards of UrbanSound8K: every excerpt, with its fold in the sample meta and the shard index "
                "(cross-validate with `zorro cv`); --media-root is the audio/ folder holding fold1 ... fold10.",
    multi_label=False,
    templates=("fold{fold}/{filename}", "{filename}"),
    fields=("id", "filename", "stem", "label", "fold", "fsID", "classID", "salience"),
    duration=4.0,
    protocol=Protocol(metrics="single_label", ks=(1,), headline="top1", folds=URBANSOUND8K_FOLDS,
                      summary="ten-fold cross-validation on the predefined folds: accuracy, mean and std over the folds"),
    add_arguments=_add_arguments,
    open_reader=_open_reader,
    video=False,
    clips=(),
    index_fields=("fold",),
    class_ids="the classID column",
)
