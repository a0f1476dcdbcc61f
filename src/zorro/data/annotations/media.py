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
  truncating a fractional start as the common download scripts do (``{start:06d}`` of 239.8
  is ``000239``), ``{start:.3f}`` the float (``30.000``), ``{start}`` the number as short as
  exact (``30``, ``30.5``).

A template is compiled once into a positional ``str.format`` pattern and one getter per
field, so formatting a name costs a few attribute reads and one call into C (AudioSet's 2M
rows are matched in seconds).
"""

from __future__ import annotations

import logging
import operator
import os
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zorro.data.annotations.records import Segment, SegmentRow

logger = logging.getLogger(__name__)

__all__ = ["MEDIA_EXTENSIONS", "NameTemplate", "MediaIndex", "MediaMatch", "match_media", "template_fields"]

#: file extensions counted as media, in order of preference when a name matches several
MEDIA_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wav", ".mp3", ".flac", ".ogg", ".m4a")

#: fields every dataset offers (values may be None for some; a dataset lists the ones it fills)
COMMON_FIELDS = ("id", "ytid", "start", "end", "label", "split", "fold", "filename", "stem")


_INT_SPECS = frozenset("dxXobcn")


class _Seconds(float):
    """A time in seconds that formats as an integer with an integer format spec (whole
    seconds, the fraction truncated)."""

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in _INT_SPECS:
            return format(int(float(self)), spec)
        if not spec:
            return str(self)
        return float.__format__(self, spec)

    def __str__(self) -> str:
        v = float(self)
        return str(int(v)) if v.is_integer() else repr(v)


def template_fields(segment: Segment | SegmentRow) -> dict[str, Any]:
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
    for key, value in (segment.extra or {}).items():
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
        compiled = []
        for literal, name, spec, conversion in parsed:
            compiled.append((literal, None if name is None else _getter(name), spec or "", conversion))
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
        self._parts = tuple(compiled)
        self._format = self._compile(parsed)

    def __repr__(self) -> str:
        return f"NameTemplate({self.template!r})"

    def format(self, segment: Segment | SegmentRow) -> str:
        """The relative file name of ``segment`` (a :class:`Segment` or a streamed
        :class:`~zorro.data.annotations.records.SegmentRow`).

        Raises:
            ValueError: the segment lacks a field the template uses, or a format spec does
                not fit the value (e.g. ``{ytid:06d}``), naming the template and the segment.
        """
        try:
            return self._format(segment)
        except _NoValue:
            values = template_fields(segment)
            missing = [f for f in self.fields if values.get(f) is None]
            raise ValueError(f"name template {self.template!r}: clip {segment.id!r} has no value for {missing}") from None
        except (ValueError, TypeError) as err:
            raise ValueError(f"name template {self.template!r} cannot format clip {segment.id!r}: {err}") from None

    def _compile(self, parsed: list[tuple[str, str | None, str | None, str | None]]) -> Callable[[Any], str]:
        """One function formatting a segment: ``str.format`` of a positional pattern over
        plain values (ints for integer specs of seconds, floats, strings), so the work is
        done in C; templates with a ``!r``/``!s`` conversion take a general path."""
        if any(conversion for _, _, _, conversion in parsed):
            return self._format_general
        pattern, getters = [], []
        for literal, name, spec, _ in parsed:
            pattern.append(literal.replace("{", "{{").replace("}", "}}"))
            if name is None:
                continue
            pattern.append(f"{{{len(getters)}{':' + spec if spec else ''}}}")
            getters.append(_plain_getter(name, spec or ""))
        fmt = "".join(pattern).format
        if len(getters) == 1:
            (g0,) = getters

            def one(seg: Any) -> str:
                v = g0(seg)
                if v is None:
                    raise _NoValue
                return fmt(v)

            return one
        if len(getters) == 2:
            g0, g1 = getters

            def two(seg: Any) -> str:
                a, b = g0(seg), g1(seg)
                if a is None or b is None:
                    raise _NoValue
                return fmt(a, b)

            return two

        def many(seg: Any) -> str:
            values = [g(seg) for g in getters]
            if None in values:
                raise _NoValue
            return fmt(*values)

        return many

    def _format_general(self, segment: Any) -> str:
        out = []
        for literal, getter, spec, conversion in self._parts:
            if literal:
                out.append(literal)
            if getter is None:
                continue
            value = getter(segment)
            if value is None:
                raise _NoValue
            if conversion:
                value = {"r": repr, "s": str, "a": ascii}[conversion](value)
            out.append(format(value, spec))
        return "".join(out)


class _NoValue(Exception):
    pass


def _seconds(name: str) -> Callable[[Any], Any]:
    def get(seg: Any) -> Any:
        v = getattr(seg, name)
        return None if v is None else _Seconds(v)

    return get


def _first_label(seg: Any) -> str | None:
    return seg.labels[0] if seg.labels else None


def _stem(seg: Any) -> str | None:
    return None if seg.filename is None else os.path.splitext(os.path.basename(seg.filename))[0]


def _extra(name: str) -> Callable[[Any], Any]:
    def get(seg: Any) -> Any:
        value = (seg.extra or {}).get(name)
        return value if isinstance(value, (str, int, float, bool)) else None

    return get


def _plain_getter(name: str, spec: str) -> Callable[[Any], Any]:
    """A getter returning a builtin value that ``format(value, spec)`` formats as the
    template means: seconds as ints (truncated) for integer specs, as their shortest exact
    text for an empty spec, as floats otherwise."""
    if name not in ("start", "end"):
        return _getter(name)
    attr = operator.attrgetter(name)
    if spec and spec[-1] in _INT_SPECS:
        def whole(seg: Any) -> int | None:
            v = attr(seg)
            return None if v is None else int(v)

        return whole
    if not spec:
        def text(seg: Any) -> str | None:
            v = attr(seg)
            return None if v is None else str(_Seconds(v))

        return text

    def number(seg: Any) -> float | None:
        v = attr(seg)
        return None if v is None else float(v)

    return number


def _getter(name: str) -> Callable[[Any], Any]:
    """How a compiled template reads field ``name`` of a segment (see :func:`template_fields`)."""
    if name in ("start", "end"):
        return _seconds(name)
    if name == "label":
        return _first_label
    if name == "stem":
        return _stem
    if name in ("id", "ytid", "split", "fold", "filename"):
        return operator.attrgetter(name)
    return _extra(name)


@dataclass
class MediaIndex:
    """Every media file under ``root``, listed once (``os.scandir``, following no links; the
    listing order does not matter: ties are broken by sorted names).

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
        self._ext_set = frozenset(exts) | {e.upper() for e in exts}
        self._root_lengths: set[int] = set()  # lengths of the stems of the root folder's files
        pending = [("", os.fspath(self.root))]  # (relative prefix, folder): depth first, no links followed
        while pending:
            prefix, folder = pending.pop()
            try:
                listing = os.scandir(folder)
            except OSError as exc:
                logger.warning("cannot list %s (%s); its files are not indexed", folder, exc)
                continue
            with listing:
                self._scan(listing, prefix, pending)

    def _scan(self, listing: Any, prefix: str, pending: list[tuple[str, str]]) -> None:
        """Index the media files of one folder listing; queue its sub-folders."""
        exts_set = self._ext_set
        by_stem, nested_name, nested_stem = self._by_stem, self._nested_name, self._nested_stem
        root_lengths = self._root_lengths
        count = 0
        for entry in listing:
            name = entry.name
            try:
                if entry.is_dir():  # a linked folder is neither listed nor entered
                    if not entry.is_symlink():
                        pending.append((prefix + name + "/", entry.path))
                    continue
            except OSError:
                continue
            dot = name.rfind(".")
            if dot <= 0:
                continue
            ext = name[dot:]
            if ext not in exts_set and ext.lower() not in exts_set:
                continue
            count += 1
            stem = name[:dot]
            if not prefix:
                old = by_stem.get(stem)
                if old is None:  # the usual case, inline: a million files a few seconds
                    by_stem[stem] = name
                else:
                    _add(by_stem, stem, name)
                root_lengths.add(dot)
                continue
            rel = prefix + name
            _add(by_stem, prefix + stem, rel)
            _add(nested_name, name, rel)
            _add(nested_stem, stem, rel)
        self._count += count

    def __len__(self) -> int:
        return self._count

    def _prefer(self, rels: list[str]) -> str:
        rank = {e: i for i, e in enumerate(self.extensions)}
        return min(rels, key=lambda r: (rank.get(os.path.splitext(r)[1].lower(), len(rank)), r))

    def finder(self) -> Callable[[str], str | None]:
        """:meth:`find_rel` as a plain function with the common case -- a name without a
        folder or an extension, in a flat media folder -- answered by one dictionary lookup
        (for matching millions of annotation rows)."""
        get, find_rel, prefer, flat = self._by_stem.get, self.find_rel, self._prefer, not self._nested_name
        sep, lengths = os.sep, self._root_lengths

        def find(name: str) -> str | None:
            if flat and "." not in name and "/" not in name and sep not in name:
                if len(name) not in lengths:  # no file has a name that long: no lookup needed
                    return None
                hits = get(name)
                if hits is None or isinstance(hits, str):
                    return hits
                return prefer(hits)
            return find_rel(name)

        return find

    def find(self, name: str) -> Path | None:
        """The file for a formatted name (relative to ``root``), or None; see the module docstring."""
        rel = self.find_rel(name)
        return None if rel is None else self.root / rel

    def find_rel(self, name: str) -> str | None:
        """As :meth:`find`, but the file's path relative to ``root`` (``/``-separated, the
        string the index holds: no new object per lookup), or None."""
        if "." not in name and "/" not in name and os.sep not in name:  # e.g. {ytid}_{start:06d}: one lookup
            hits = self._by_stem.get(name)
            if hits is not None:
                return hits if isinstance(hits, str) else self._prefer(hits)
            if not self._nested_name:
                return None
        if os.sep != "/":
            name = name.replace(os.sep, "/")
        while name.startswith("./"):
            name = name[2:]
        dot = name.rfind(".")
        slash = name.rfind("/")
        base = name[:dot] if dot > slash + 1 and name[dot:].lower() in self._ext_set else name
        hits = self._by_stem.get(base)
        if hits is not None:
            if isinstance(hits, str):  # one file of that path and stem (the usual case)
                return hits
            return name if name in hits else self._prefer(hits)
        if "/" in name or not self._nested_name:
            return None
        hits_list = _get(self._nested_name, name) or _get(self._nested_stem, base)
        if not hits_list:
            return None
        folders = sorted({os.path.dirname(h) for h in hits_list})
        if len(folders) > 1:
            self.ambiguous += 1
            if self.ambiguous == 1:
                logger.warning("media name %r found in %d folders under %s; taking the one in %r (further cases counted)",
                               name, len(folders), self.root, folders[0])
            hits_list = [h for h in hits_list if os.path.dirname(h) == folders[0]]
        return self._prefer(hits_list)


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
