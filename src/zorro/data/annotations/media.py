"""Finding the media file of each annotated clip: name templates and an index of a folder.

Users name their downloads in many ways (``{ytid}.mp4``, ``Y{ytid}.wav``,
``{ytid}_{start:06d}.mp4``, ``train/{label}/{ytid}_{start:06d}_{end:06d}.mp4``, ...). A
:class:`NameTemplate` is a ``str.format`` pattern over the fields of a
:class:`~zorro.data.annotations.records.Segment`; a :class:`MediaIndex` lists a media folder
once and answers, for a formatted name:

1. the file at exactly that relative path;
2. else the file at that path with any media extension (``{ytid}.mp4`` finds ``{ytid}.mkv``),
   preferring the order of ``extensions``;
3. else, when the name has no folder part, a file of that name (then of that stem, any
   media extension) anywhere under the folder; a name found in several folders is taken
   from the first in sorted order and counted as ambiguous.

Template fields (a dataset offers the ones it has; any other name is a ValueError):

* ``id``, ``ytid``, ``label`` (the first label), ``split``, ``fold``, ``filename``,
  ``stem`` (``filename`` without its extension), and dataset extras (e.g. ``target``);
* ``start``/``end`` in seconds: ``{start:06d}`` formats the whole seconds (``000030``),
  ``{start:.3f}`` the float (``30.000``), ``{start}`` the number as short as exact
  (``30``, ``30.5``).
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zorro.data.annotations.records import Segment
from zorro.data.datasets import MEDIA_EXTENSIONS

logger = logging.getLogger(__name__)

__all__ = ["MEDIA_EXTENSIONS", "NameTemplate", "MediaIndex", "MediaMatch", "match_media", "template_fields"]

#: fields every dataset offers (values may be None for some; a dataset lists the ones it fills)
COMMON_FIELDS = ("id", "ytid", "start", "end", "label", "split", "fold", "filename", "stem")


class _Seconds(float):
    """A time in seconds that formats as an integer with an integer format spec."""

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "dxXob":
            return format(int(round(float(self))), spec)
        if not spec:
            return str(self)
        return float.__format__(self, spec)

    def __str__(self) -> str:
        v = float(self)
        return str(int(v)) if v.is_integer() else repr(v)


def template_fields(segment: Segment) -> dict[str, Any]:
    """The values a :class:`NameTemplate` can use for ``segment`` (None where it has none)."""
    values: dict[str, Any] = {
        "id": segment.id,
        "ytid": segment.ytid,
        "start": None if segment.start is None else _Seconds(segment.start),
        "end": None if segment.end is None else _Seconds(segment.end),
        "label": segment.labels[0] if segment.labels else None,
        "split": segment.split,
        "fold": segment.fold,
        "filename": segment.filename,
        "stem": None if segment.filename is None else Path(segment.filename).stem,
    }
    for key, value in segment.extra.items():
        if key not in values and isinstance(value, (str, int, float, bool)):
            values[key] = value
    return values


class NameTemplate:
    """A media file name pattern, e.g. ``"{ytid}_{start:06d}.mp4"`` (see the module docstring).

    Args:
        template: ``str.format`` pattern; may contain ``/`` for sub-folders.
        fields: the field names the dataset offers; any other field in ``template`` is an error.

    Raises:
        ValueError: an empty template, unbalanced braces, a positional or unknown field
            (naming the fields that exist), an attribute or index access (``{ytid.upper}``),
            an absolute path.
    """

    def __init__(self, template: str, fields: Sequence[str]) -> None:
        if not isinstance(template, str) or not template.strip():
            raise ValueError(f"a name template must be a non-empty string, got {template!r}")
        if template.startswith("/"):
            raise ValueError(f"name template {template!r} must be relative to the media root, not absolute")
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as err:
            raise ValueError(f"name template {template!r} is not a valid format string: {err}") from None
        used = []
        for _, name, _, _ in parsed:
            if name is None:
                continue
            if name == "" or name.isdigit():
                raise ValueError(f"name template {template!r}: fields must be named, e.g. {{ytid}}; available: {sorted(fields)}")
            if not name.isidentifier():
                raise ValueError(f"name template {template!r}: field {{{name}}} must be a plain name (no attributes or indices)")
            if name not in fields:
                raise ValueError(f"name template {template!r}: unknown field {{{name}}}; available fields: {sorted(fields)}")
            used.append(name)
        if not used:
            raise ValueError(f"name template {template!r} uses no field, so every clip would map to one file")
        self.template = template
        self.fields = tuple(dict.fromkeys(used))

    def __repr__(self) -> str:
        return f"NameTemplate({self.template!r})"

    def format(self, segment: Segment) -> str:
        """The relative file name of ``segment``.

        Raises:
            ValueError: the segment lacks a field the template uses, or a format spec does
                not fit the value (e.g. ``{ytid:06d}``), naming the template and the segment.
        """
        values = template_fields(segment)
        missing = [f for f in self.fields if values.get(f) is None]
        if missing:
            raise ValueError(f"name template {self.template!r}: clip {segment.id!r} has no value for {missing}")
        try:
            return self.template.format(**values)
        except (ValueError, TypeError) as err:
            raise ValueError(f"name template {self.template!r} cannot format clip {segment.id!r}: {err}") from None


@dataclass
class MediaIndex:
    """Every media file under ``root``, listed once (``os.walk``, following no links).

    Args:
        root: the media folder.
        extensions: file extensions counted as media, lower case with the dot, in order of
            preference when a name matches several (default :data:`MEDIA_EXTENSIONS`).
    """

    root: Path
    extensions: tuple[str, ...] = MEDIA_EXTENSIONS
    ambiguous: int = 0
    # relative path without extension -> relative path(s); a str while there is one (memory:
    # AudioSet's 2M files). Basename tables only for files in sub-folders (a root file is
    # found by its relative path already).
    _by_stem: dict[str, str | list[str]] = field(default_factory=dict, repr=False)
    _nested_name: dict[str, str | list[str]] = field(default_factory=dict, repr=False)
    _nested_stem: dict[str, str | list[str]] = field(default_factory=dict, repr=False)
    _count: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"media root {self.root} is not a folder")
        exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in self.extensions)
        if not exts:
            raise ValueError("MediaIndex needs at least one media extension")
        self.extensions = exts
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in exts:
                    continue
                self._count += 1
                if rel_dir == ".":
                    _add(self._by_stem, stem, name)
                    continue
                rel = f"{Path(rel_dir).as_posix()}/{name}"
                _add(self._by_stem, rel[: len(rel) - len(ext)], rel)
                _add(self._nested_name, name, rel)
                _add(self._nested_stem, stem, rel)

    def __len__(self) -> int:
        return self._count

    def _prefer(self, rels: list[str]) -> str:
        rank = {e: i for i, e in enumerate(self.extensions)}
        return min(rels, key=lambda r: (rank.get(os.path.splitext(r)[1].lower(), len(rank)), r))

    def find(self, name: str) -> Path | None:
        """The file for a formatted name (relative to ``root``), or None; see the module docstring."""
        name = name.replace(os.sep, "/")
        while name.startswith("./"):
            name = name[2:]
        stem, ext = os.path.splitext(name)
        base = stem if ext.lower() in self.extensions else name
        hits = _get(self._by_stem, base)
        if hits:
            return self.root / (name if name in hits else self._prefer(hits))
        if "/" in name:
            return None
        hits = _get(self._nested_name, name) or _get(self._nested_stem, base)
        if not hits:
            return None
        folders = sorted({os.path.dirname(h) for h in hits})
        if len(folders) > 1:
            self.ambiguous += 1
            if self.ambiguous == 1:
                logger.warning("media name %r found in %d folders under %s; taking the one in %r (further cases counted)",
                               name, len(folders), self.root, folders[0])
            hits = [h for h in hits if os.path.dirname(h) == folders[0]]
        return self.root / self._prefer(hits)


def _add(table: dict[str, str | list[str]], key: str, rel: str) -> None:
    old = table.get(key)
    if old is None:
        table[key] = rel
    elif isinstance(old, str):
        table[key] = [old, rel]
    else:
        old.append(rel)


def _get(table: dict[str, str | list[str]], key: str) -> list[str]:
    value = table.get(key)
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


@dataclass
class MediaMatch:
    """Result of :func:`match_media`: ``found`` (segment, file) pairs in annotation order,
    ``missing`` segments without a file, ``ambiguous`` names found in several folders."""

    found: list[tuple[Segment, Path]]
    missing: list[Segment]
    ambiguous: int = 0


def match_media(segments: Iterable[Segment], index: MediaIndex, templates: Sequence[NameTemplate]) -> MediaMatch:
    """Find each segment's media file, trying ``templates`` in order.

    Args:
        segments: annotated clips.
        index: the listed media folder.
        templates: one or more name templates (the first that finds a file wins).

    Returns:
        a :class:`MediaMatch`.

    Raises:
        ValueError: no template, or a template cannot format a segment (see
            :meth:`NameTemplate.format`).
    """
    if not templates:
        raise ValueError("match_media needs at least one name template")
    found: list[tuple[Segment, Path]] = []
    missing: list[Segment] = []
    for seg in segments:
        for tpl in templates:
            path = index.find(tpl.format(seg))
            if path is not None:
                found.append((seg, path))
                break
        else:
            missing.append(seg)
    if missing:
        logger.warning("%d of %d annotated clips have no media file under %s (templates %s)",
                       len(missing), len(found) + len(missing), index.root, [t.template for t in templates])
    return MediaMatch(found=found, missing=missing, ambiguous=index.ambiguous)
