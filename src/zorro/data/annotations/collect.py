"""One streaming pass from a dataset's annotation rows to what ``zorro prepare`` needs.

:func:`collect` reads an :class:`~zorro.data.annotations.records.AnnotationReader` once and
looks up every row's media file by name template. Memory grows with the vocabulary and the
clips found, not with the rows of the file:

* a found clip goes into a :class:`~zorro.data.sources.SourceTable` (about 200 bytes; with
  ``keep_sources=False``, as a dry run does, it is only counted);
* a clip without a file is written at once as a line of the ``missing`` spool file (the
  fields of its annotation: ``id``, ``ytid``, ``start``, ``end``, ``split``, ``fold``,
  ``filename`` and the dataset's extras, then ``labels``, ``annotation`` -- ``file:line`` --
  and ``looked_for``, the templates tried);
* a row the reader leaves out goes to the ``dropped`` spool file;
* a clip listed twice is found with 8 bytes a row: the hash of every row's key; only when
  two hashes agree is the file read a second time to find the exact duplicates, which are
  then dropped (reason: the reader's ``duplicate_reason``) from the found clips or the
  missing spool.

Class ids are assigned in order of first use while streaming and remapped to the reader's
vocabulary (known only at the end for VGGSound or ESC-10) before returning.
"""

from __future__ import annotations

import json
import logging
import os
from array import array
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _enc
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zorro.data.annotations.media import MediaIndex, NameTemplate
from zorro.data.annotations.records import AnnotationReader, Dropped, DroppedRows, SegmentRow, segment_meta
from zorro.data.sources import SourceTable, meta_json

logger = logging.getLogger(__name__)

__all__ = ["Collected", "collect", "CLIP_KINDS", "MISSING_SPOOL", "DROPPED_SPOOL"]

#: how downloaded media relate to the annotated windows (see :mod:`zorro.data.annotations.sources`)
CLIP_KINDS = ("trimmed", "full")
#: spool file names (in the spool folder) of the missing clips and the dropped rows
MISSING_SPOOL = ".missing.jsonl.spool"
DROPPED_SPOOL = ".dropped_rows.jsonl.spool"


@dataclass
class Collected:
    """The result of :func:`collect`.

    Attributes:
        sources: the found clips in annotation order (None with ``keep_sources=False``).
        labels: the vocabulary in class-id order.
        multi_label: whether a clip may carry several labels.
        counts: ``rows`` (data rows read), ``annotated`` (rows kept: usable, selected, not
            duplicates), ``dropped_rows``, ``filtered_rows``, ``found``, ``missing``;
            ``annotated == found + missing`` and ``rows == annotated + dropped_rows +
            filtered_rows``.
        dropped_counts, filtered_counts: rows left out / not selected, per reason.
        missing_spool, dropped_spool: the spool files (JSON lines) of the missing clips and
            the dropped rows, in annotation order (dropped duplicates last).
        first_missing: the first few names looked for, with the first template.
        templates: the templates tried, in order.
        ambiguous: names found in several folders (the first in sorted order was taken).
        files: the annotation files read.
    """

    sources: SourceTable | None
    labels: list[str]
    multi_label: bool
    counts: dict[str, int]
    dropped_counts: dict[str, int]
    filtered_counts: dict[str, int]
    missing_spool: Path
    dropped_spool: Path
    first_missing: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    ambiguous: int = 0
    files: list[str] = field(default_factory=list)

    def remove_spools(self) -> None:
        """Delete the spool files (after they were copied into place, or on an error)."""
        for p in (self.missing_spool, self.dropped_spool):
            p.unlink(missing_ok=True)


_float_repr = float.__repr__


def _json_value(value: Any) -> str:
    """``json.dumps(value)`` for the values annotation fields hold, faster for the usual ones."""
    kind = type(value)
    if kind is str:
        return _enc(value)
    if kind is float and value - value == 0:  # finite
        return _float_repr(value)
    if kind is int:
        return int.__repr__(value)
    if kind is list or kind is tuple:
        try:
            return "[" + ",".join(map(_enc, value)) + "]"  # a list of strings (AudioSet's MIDs)
        except TypeError:
            pass
    return json.dumps(value)


_ROW_FIELDS = (("ytid", 2), ("start", 3), ("end", 4), ("split", 5), ("fold", 6), ("filename", 7))


class _MissingLines:
    """Builds the JSON line of a missing clip quickly (AudioSet: millions of them)."""

    def __init__(self, templates: Sequence[NameTemplate]) -> None:
        self.looked_for = json.dumps([t.template for t in templates])
        self.label_json: dict[str, str] = {}
        self.where: dict[str, str] = {}
        self.split_json: dict[str, str] = {}
        self.shared: dict[int, tuple[Any, str]] = {}

    def _shared(self, value: Any, render: Any) -> str:
        """The JSON text of a value many rows share (a label tuple, the extra fields of a
        label set), computed once per object (bounded)."""
        cached = self.shared.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        text = render(value)
        if len(self.shared) < 1 << 16:
            self.shared[id(value)] = (value, text)  # the reference keeps the id from being reused
        return text

    def _labels(self, labels: Sequence[str]) -> str:
        known = self.label_json
        names = []
        for name in labels:
            text = known.get(name)
            if text is None:
                text = known[name] = _enc(name)
            names.append(text)
        return ",".join(names)

    def __call__(self, row: SegmentRow) -> str:
        id_, labels, ytid, start, end, split, fold, filename, source, line, extra = row
        out = '{"id":' + _enc(id_)
        if ytid is not None:
            out += ',"ytid":' + _enc(ytid)
        if start is not None:
            out += ',"start":' + (_float_repr(start) if type(start) is float and start - start == 0 else _json_value(start))
        if end is not None:
            out += ',"end":' + (_float_repr(end) if type(end) is float and end - end == 0 else _json_value(end))
        if split is not None:
            text = self.split_json.get(split)
            if text is None:
                text = self.split_json[split] = ',"split":' + _enc(split)
            out += text
        if fold is not None:
            out += ',"fold":' + _json_value(fold)
        if filename is not None:
            out += ',"filename":' + _enc(filename)
        if extra:
            out += self._shared(extra, _extra_json)
        if line:
            prefix = self.where.get(source)
            if prefix is None:
                prefix = self.where[source] = _enc(source + ":")[:-1]
            where = prefix + str(line) + '"'
        else:
            where = _enc(source)
        return f'{out},"labels":[{self._shared(labels, self._labels)}],"annotation":{where},"looked_for":{self.looked_for}}}\n'


def _extra_json(extra: dict[str, Any]) -> str:
    return "".join("," + _enc(key) + ":" + _json_value(value) for key, value in extra.items())


def _dropped_line(d: Dropped) -> str:
    return json.dumps(d.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n"


def collect(
    reader: AnnotationReader,
    index: MediaIndex,
    templates: Sequence[NameTemplate],
    *,
    spool_dir: str | os.PathLike,
    clips: str = "trimmed",
    keep_sources: bool = True,
    first_missing: int = 5,
) -> Collected:
    """Stream ``reader``'s rows, find each clip's file, spool what is missing or dropped.

    Args:
        reader: the dataset's annotation reader (its ``dropped`` is given a sink here).
        index: the listed media folder.
        templates: name templates, tried in order (the first that finds a file wins).
        spool_dir: an existing folder for the spool files (:data:`MISSING_SPOOL`,
            :data:`DROPPED_SPOOL`).
        clips: ``"trimmed"`` (files are the annotated windows: no start/end given to the
            decoder) or ``"full"`` (files are whole videos: the annotated start/end are used).
        keep_sources: build the table of found clips (False: only count them).
        first_missing: how many missing names to keep for the summary.

    Returns:
        a :class:`Collected` (the spool files belong to the caller: move them into place or
        :meth:`Collected.remove_spools`).

    Raises:
        ValueError: no template; a template cannot format a row; ``clips="full"`` for a row
            without a window; an unusable row (``on_error="raise"``), duplicates included.
            The spool files are removed before raising.
    """
    if not templates:
        raise ValueError("collect needs at least one name template")
    if clips not in CLIP_KINDS:
        raise ValueError(f"clips must be one of {CLIP_KINDS}, got {clips!r}")
    spool = Path(spool_dir)
    missing_path, dropped_path = spool / MISSING_SPOOL, spool / DROPPED_SPOOL
    missing_fh = open(missing_path, "w", encoding="utf-8")
    dropped_fh = open(dropped_path, "w", encoding="utf-8")
    try:
        return _collect(reader, index, list(templates), missing_fh, dropped_fh, missing_path, dropped_path,
                        clips=clips, keep_sources=keep_sources, first_missing=first_missing)
    except BaseException:
        missing_fh.close()
        dropped_fh.close()
        missing_path.unlink(missing_ok=True)
        dropped_path.unlink(missing_ok=True)
        raise


def _collect(reader, index, templates, missing_fh, dropped_fh, missing_path, dropped_path, *, clips, keep_sources, first_missing):
    reader.dropped.sink = lambda d: dropped_fh.write(_dropped_line(d))
    provisional: dict[str, int] = {}
    table = SourceTable([], multi_label=reader.multi_label, root=os.fspath(index.root)) if keep_sources else None
    hashes = array("q")
    files: dict[str, int] = {}
    missing_line = _MissingLines(templates)
    write_missing = missing_fh.write
    first: list[str] = []
    found = missing = 0
    full = clips == "full"
    find = index.finder()
    first_format, *other_formats = [t._format for t in templates]  # compiled; NameTemplate.format explains a failure
    append_hash = hashes.append
    for row in reader:
        append_hash(hash(row[0]))
        try:
            rel = find(first_format(row))
            if rel is None:
                for fmt in other_formats:
                    rel = find(fmt(row))
                    if rel is not None:
                        break
        except Exception:
            for t in templates:
                t.format(row)  # raises ValueError naming the template and the clip
            raise
        if rel is None:
            missing += 1
            write_missing(missing_line(row))
            if len(first) < first_missing:
                first.append(templates[0].format(row))
            continue
        found += 1
        if table is None:
            continue
        if full and row.start is None:
            raise ValueError(f"clip {row.id!r} has no annotated window; clips='full' needs start/end (use 'trimmed')")
        ids = []
        for name in row.labels:
            c = provisional.get(name)
            if c is None:
                c = provisional[name] = len(provisional)
            ids.append(c)
        f = files.get(row.source)
        if f is None:
            f = files[row.source] = len(files)
        table.append(rel, ids, row.start if full else None, row.end if full else None, meta_json(segment_meta(row)),
                     (f << 32) | row.line)
    labels = reader.labels()
    counts = {"rows": reader.rows, "annotated": found + missing, "found": found, "missing": missing}
    dups = _duplicates(reader, hashes)
    if dups:
        counts = _drop_duplicates(reader, dups, table, files, missing_fh, missing_path, counts)
    missing_fh.close()
    reader.dropped.sink = None
    dropped_fh.close()
    if table is not None:
        vocab = {name: i for i, name in enumerate(labels)}
        unknown = sorted(set(provisional) - set(vocab))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} of the annotation are not in its vocabulary")
        mapping = [0] * len(provisional)
        for name, c in provisional.items():
            mapping[c] = vocab[name]
        table.remap_labels(labels, mapping)
    counts["dropped_rows"] = reader.dropped.total
    counts["filtered_rows"] = int(sum(reader.filtered.values()))
    if missing:
        logger.warning("%d of %d annotated clips have no media file under %s (templates %s)", counts["missing"], counts["annotated"],
                       index.root, [t.template for t in templates])
    return Collected(
        sources=table, labels=list(labels), multi_label=reader.multi_label, counts=counts,
        dropped_counts=dict(reader.dropped.counts), filtered_counts=dict(reader.filtered),
        missing_spool=missing_path, dropped_spool=dropped_path, first_missing=first,
        templates=[t.template for t in templates], ambiguous=index.ambiguous, files=list(reader.files),
    )


def _duplicates(reader: AnnotationReader, hashes: array) -> list[tuple[SegmentRow, str]]:
    """The rows whose key an earlier row already had, with that row's ``file:line``, in file
    order. Reads the files again only when two rows' key hashes agree."""
    if len(hashes) < 2:
        return []
    h = np.frombuffer(hashes, dtype=np.int64)  # a view: sorted in place, no copy of 8 bytes a row
    h.sort()
    suspects = set(h[1:][h[1:] == h[:-1]].tolist())
    if not suspects:
        return []
    logger.info("%d annotation keys occur more than once: reading the annotation again to find the duplicates", len(suspects))
    real = reader.dropped
    reader.dropped = DroppedRows("skip")  # the rows left out were reported in the first pass
    first: dict[str, str] = {}
    out = []
    try:
        for row in reader:
            if hash(row.id) not in suspects:
                continue
            where = first.get(row.id)
            if where is None:
                first[row.id] = f"{row.source.replace(os.sep, '/').rsplit('/', 1)[-1]}:{row.line}"
            else:
                out.append((row, where))
    finally:
        reader.dropped = real
    return out


def _drop_duplicates(reader, dups, table, files, missing_fh, missing_path, counts):
    """Report each duplicate (raising with ``on_error="raise"``) and remove it from the found
    clips or the missing spool; returns the corrected counts."""
    found_rows = set()
    missing_where = set()
    for row, where in dups:
        reader.dropped(row.source, row.line, reader.duplicate_reason, f"{row.id} already listed at {where}")
        f = files.get(row.source)
        if f is not None:
            found_rows.add((f << 32) | row.line)
        missing_where.add(f"{row.source}:{row.line}")
    removed_found = table.drop_rows(found_rows) if table is not None else 0
    missing_fh.flush()
    removed_missing = 0
    tmp = missing_path.with_name(missing_path.name + ".dedup")
    with open(missing_path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            if json.loads(line).get("annotation") in missing_where:
                removed_missing += 1
                continue
            dst.write(line)
    os.replace(tmp, missing_path)
    if table is None:  # not kept: every duplicate that is not missing was found
        removed_found = len(dups) - removed_missing
    counts = dict(counts)
    counts["found"] -= removed_found
    counts["missing"] -= removed_missing
    counts["annotated"] = counts["found"] + counts["missing"]
    return counts
