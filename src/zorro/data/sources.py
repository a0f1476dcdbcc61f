"""The inputs of ``zorro prepare``: :class:`PrepareSource` (one media file) and
:class:`SourceTable` (many, held compactly).

AudioSet's unbalanced training list matches ~1.6M downloaded files; a Python object per
source with its own dicts and tuples costs over a kilobyte each. A :class:`SourceTable`
keeps the same information in columns -- the path (relative to the media folder, the string
the media index already holds), the class ids in one int32 array, start/end in float64
arrays (NaN for none) and the annotation fields as one compact JSON string -- about 200
bytes a source, and hands out :class:`PrepareSource` objects one at a time.

:func:`meta_json` is the canonical text of a source's annotation fields (sorted keys, no
spaces); :meth:`SourceTable.canonical` the canonical text of a whole source, which the
prepared folder's fingerprint hashes (the same for a list of sources and for a table).
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

__all__ = ["PrepareSource", "SourceTable", "meta_json"]


@dataclass(frozen=True)
class PrepareSource:
    """One media file to prepare.

    Attributes:
        path: the media file.
        labels: class names (exactly one unless ``multi_label``; may be empty when
            ``multi_label``).
        start, end: optional segment of the file (s, container timeline): windows are placed
            inside it (``window="manifest"``: the window *is* it).
        meta: JSON-serialisable annotation fields stored in each sample's JSON (``meta``).
        extra: the source's extra modality values, ``name -> str`` (a text, or the path of
            a ``.npy`` sequence; see :mod:`zorro.data.modalities`); the ones named in the
            ``modalities`` setting are stored as members of each of its samples.
    """

    path: str
    labels: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_entry(cls, entry: Any, meta: Mapping[str, Any] | None = None) -> "PrepareSource":
        """From a :class:`zorro.data.ManifestEntry` (or anything with ``path``, ``labels``,
        ``start``, ``end``, and optionally ``extra``)."""
        return cls(str(entry.path), tuple(entry.labels), entry.start, entry.end, dict(meta or {}), dict(getattr(entry, "extra", None) or {}))


def meta_json(meta: Mapping[str, Any]) -> str:
    """The canonical JSON text of annotation fields: sorted keys, no spaces, ASCII.

    Raises:
        ValueError: ``meta`` is not JSON-serialisable.
    """
    try:
        return json.dumps(dict(meta), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"annotation fields must be JSON-serialisable ({exc})") from None


_EMPTY = "{}"  # one shared string for the sources without extra modality values


def _num(value: float | None) -> str:
    return "null" if value is None else repr(float(value))


class SourceTable(Sequence):
    """Many :class:`PrepareSource` in columns (see the module docstring); a sequence of
    :class:`PrepareSource`, made on access.

    Args:
        labels: the vocabulary in class-id order.
        multi_label: sources may have any number of labels (else exactly one).
        root: when given, paths are stored relative to it (``os.path.join(root, path)`` is
            the file).
    """

    def __init__(self, labels: Sequence[str], *, multi_label: bool = False, root: str | os.PathLike | None = None) -> None:
        if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
            raise TypeError("labels must be a sequence of class-name strings (the vocabulary in class-id order)")
        self.labels = list(labels)
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels has duplicate names")
        self.multi_label = bool(multi_label)
        self.root = None if root is None else os.fspath(root)
        self._paths: list[str] = []
        self._values = array("i")
        self._offsets = array("q", [0])
        self._start = array("d")
        self._end = array("d")
        self._meta: list[str] = []
        self._extra: list[str] = []  # extra modality values as compact JSON ("{}": none)
        self.rows = array("q")  # where each source came from (caller-defined id; -1: none)
        self._label_json: list[str] | None = None

    # -------------------------------------------------------------- building

    def append(self, path: str, label_ids: Sequence[int], start: float | None = None, end: float | None = None,
               meta: str = "{}", row: int = -1, extra: str = "{}") -> None:
        """Add one source (no checks: see :meth:`from_sources` for checked input).

        Args:
            path: the file (relative to ``root`` when the table has one).
            label_ids: its class ids.
            start, end: its segment (s) or None.
            meta: its annotation fields as :func:`meta_json` text.
            row: an id of its annotation row (to drop it later by row, :meth:`drop_rows`).
            extra: its extra modality values (``name -> str``) as :func:`meta_json` text.
        """
        self._paths.append(path)
        self._values.extend(label_ids)
        self._offsets.append(len(self._values))
        self._start.append(math.nan if start is None else start)
        self._end.append(math.nan if end is None else end)
        self._meta.append(meta)
        self._extra.append(_EMPTY if extra == _EMPTY else extra)
        self.rows.append(row)

    @classmethod
    def from_sources(cls, sources: Sequence[Any], labels: Sequence[str], multi_label: bool) -> "SourceTable":
        """A checked table of ``sources`` (:class:`PrepareSource`, or anything with ``path``,
        ``labels``, ``start``, ``end`` such as :class:`zorro.data.ManifestEntry`).

        Raises:
            TypeError: a source of another kind, labels given as a string.
            ValueError: a label not in ``labels``, a single-label source without exactly one
                label, a non-finite or inverted segment, meta that is not JSON-serialisable.
        """
        table = cls(labels, multi_label=multi_label)
        vocab = {name: k for k, name in enumerate(table.labels)}
        for k, src in enumerate(sources):
            if not isinstance(src, PrepareSource):
                if hasattr(src, "path") and hasattr(src, "labels"):
                    src = PrepareSource.from_entry(src, getattr(src, "meta", None))
                else:
                    raise TypeError(f"sources[{k}] must be a PrepareSource, got {type(src).__name__}")
            if isinstance(src.labels, str):
                raise TypeError(f"sources[{k}].labels must be a tuple of names, got the string {src.labels!r}")
            labs = tuple(str(x) for x in src.labels)
            for lab in labs:
                if lab not in vocab:
                    raise ValueError(f"sources[{k}] ({src.path}) has label {lab!r}, which is not in labels")
            if not table.multi_label and len(labs) != 1:
                raise ValueError(f"sources[{k}] ({src.path}) has {len(labs)} labels; single-label data needs exactly one (or multi_label=True)")
            for name in ("start", "end"):
                v = getattr(src, name)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                    raise ValueError(f"sources[{k}].{name} must be a finite number of seconds or None, got {v!r}")
            if src.start is not None and src.end is not None and src.end <= src.start:
                raise ValueError(f"sources[{k}] ({src.path}) has end {src.end} <= start {src.start}")
            try:
                meta = meta_json(src.meta)
            except ValueError as exc:
                raise ValueError(f"sources[{k}].meta: {exc}") from None
            extra = dict(getattr(src, "extra", None) or {})
            bad = {n: v for n, v in extra.items() if not isinstance(n, str) or not isinstance(v, str)}
            if bad:
                raise ValueError(f"sources[{k}].extra must map modality names to strings (a text or a .npy path), got {bad!r}")
            table.append(os.fspath(src.path), [vocab[lab] for lab in labs], None if src.start is None else float(src.start),
                         None if src.end is None else float(src.end), meta, extra=meta_json(extra))
        return table

    def remap_labels(self, labels: Sequence[str], mapping: Sequence[int]) -> None:
        """Replace the vocabulary by ``labels``, class id ``c`` becoming ``mapping[c]`` (for
        a table built with provisional ids while the final vocabulary was unknown)."""
        remap = np.asarray(mapping, dtype=np.int64)
        values = np.frombuffer(self._values, dtype=np.int32)
        if values.size and (values.min() < 0 or values.max() >= remap.size):
            raise ValueError("remap_labels: a class id has no entry in mapping")
        new = remap[values] if values.size else values
        if new.size and (new.min() < 0 or new.max() >= len(labels)):
            raise ValueError("remap_labels: mapping points outside the new labels")
        self._values = array("i", new.astype(np.int32).tobytes())
        self.labels = list(labels)
        self._label_json = None

    def drop_rows(self, rows: set[int]) -> int:
        """Remove the sources whose ``row`` id is in ``rows``; returns how many."""
        if not rows:
            return 0
        keep = [i for i, r in enumerate(self.rows) if r not in rows]
        dropped = len(self) - len(keep)
        if dropped:
            old_values, old_offsets = self._values, self._offsets
            self._paths = [self._paths[i] for i in keep]
            self._meta = [self._meta[i] for i in keep]
            self._extra = [self._extra[i] for i in keep]
            self._start = array("d", (self._start[i] for i in keep))
            self._end = array("d", (self._end[i] for i in keep))
            self.rows = array("q", (self.rows[i] for i in keep))
            self._values = array("i")
            self._offsets = array("q", [0])
            for i in keep:
                self._values.extend(old_values[old_offsets[i] : old_offsets[i + 1]])
                self._offsets.append(len(self._values))
        return dropped

    # -------------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, i: int) -> str:
        """The file of source ``i``."""
        p = self._paths[i]
        return p if self.root is None else os.path.join(self.root, p)

    def label_ids(self, i: int) -> list[int]:
        """The class ids of source ``i``."""
        return list(self._values[self._offsets[i] : self._offsets[i + 1]])

    def segment(self, i: int) -> tuple[float | None, float | None]:
        """``(start, end)`` of source ``i`` (None where not given)."""
        s, e = self._start[i], self._end[i]
        return (None if s != s else s), (None if e != e else e)

    def meta_text(self, i: int) -> str:
        """The :func:`meta_json` text of source ``i``'s annotation fields."""
        return self._meta[i]

    def extra_text(self, i: int) -> str:
        """The :func:`meta_json` text of source ``i``'s extra modality values (``"{}"``: none)."""
        return self._extra[i]

    def __getitem__(self, i: int) -> PrepareSource:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("SourceTable does not slice; take sources one at a time")
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"source {i} out of range for {len(self)} sources")
        start, end = self.segment(i)
        return PrepareSource(self.path(i), tuple(self.labels[c] for c in self.label_ids(i)), start, end, json.loads(self._meta[i]),
                             json.loads(self._extra[i]))

    def __iter__(self) -> Iterator[PrepareSource]:
        for i in range(len(self)):
            yield self[i]

    def canonical(self, i: int) -> str:
        """The canonical text of source ``i``: ``[path, [label names], start, end, meta]`` as
        compact JSON (what the prepared folder's fingerprint hashes), with its extra modality
        values appended when it has any."""
        if self._label_json is None:
            self._label_json = [json.dumps(name) for name in self.labels]
        names = ",".join(self._label_json[c] for c in self._values[self._offsets[i] : self._offsets[i + 1]])
        start, end = self.segment(i)
        extra = "" if self._extra[i] == _EMPTY else "," + self._extra[i]
        return f"[{json.dumps(self.path(i))},[{names}],{_num(start)},{_num(end)},{self._meta[i]}{extra}]"

    def nbytes(self) -> int:
        """An estimate of the memory the table holds (bytes): columns and strings."""
        strings = sum(len(p) + 49 for p in self._paths) if self.root is None else 0
        return (strings + sum(len(m) + 49 for m in self._meta) + sum(len(x) + 49 for x in self._extra if x is not _EMPTY) + 8 * 3 * len(self._paths)
                + self._values.itemsize * len(self._values) + 8 * (len(self._offsets) + 3 * len(self._start)))
