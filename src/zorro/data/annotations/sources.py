"""From parsed annotations and found media files to the inputs of :func:`zorro.data.prepare.prepare_shards`
(in memory; ``zorro prepare <dataset>`` streams instead, :mod:`zorro.data.annotations.collect`).

:func:`prepare_inputs` maps each (segment, file) pair to a
:class:`~zorro.data.prepare.PrepareSource` whose ``meta`` keeps the annotation's fields (id,
YouTube id, start/end, split, fold, ...), lists the annotated clips without a file as
``missing`` and the rows left out as ``dropped_rows``, and gathers the counts of what was left
out and why into ``extra_info`` -- so the prepared folder (``dataset.json`` and its lists)
says exactly which annotated clips it holds.

Downloaded clips are usually already cut to the annotated window (``clips="trimmed"``: a
``{ytid}_{start:06d}.mp4`` file starts at the window's start, so the window is the whole
file). With ``clips="full"`` the files are the whole YouTube videos and the annotated
``start``/``end`` select the segment inside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from zorro.data.annotations.collect import CLIP_KINDS
from zorro.data.annotations.media import MediaMatch
from zorro.data.annotations.records import ParseResult, Segment

__all__ = ["CLIP_KINDS", "PrepareInputs", "prepare_inputs"]


@dataclass
class PrepareInputs:
    """Keyword arguments for :func:`~zorro.data.prepare.prepare_shards` (besides ``out_dir``
    and the decode settings): ``sources``, ``labels``, ``multi_label``, ``missing``,
    ``dropped_rows``, ``annotation_counts``, ``extra_info``."""

    sources: list[Any]
    labels: list[str]
    multi_label: bool
    missing: list[dict[str, Any]]
    extra_info: dict[str, Any]
    dropped_rows: list[dict[str, Any]] = field(default_factory=list)
    annotation_counts: dict[str, int] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        """The fields as a dict, ready for ``prepare_shards(**inputs.kwargs(), ...)``."""
        return {"labels": self.labels, "multi_label": self.multi_label, "missing": self.missing, "extra_info": self.extra_info,
                "dropped_rows": self.dropped_rows, "annotation_counts": self.annotation_counts}


def _missing_entry(seg: Segment, names: Sequence[str]) -> dict[str, Any]:
    entry = seg.meta()
    entry["labels"] = list(seg.labels)
    entry["annotation"] = f"{seg.source}:{seg.line}" if seg.line else seg.source
    if names:
        entry["looked_for"] = list(names)
    return entry


def prepare_inputs(
    dataset: str,
    parsed: ParseResult,
    match: MediaMatch,
    *,
    clips: str = "trimmed",
    templates: Sequence[Any] = (),
    annotation_files: Sequence[str] = (),
    media_root: str | None = None,
) -> PrepareInputs:
    """Build the inputs of ``prepare_shards`` for one dataset.

    Args:
        dataset: the dataset's name, recorded in ``extra_info["dataset"]``.
        parsed: the parser's result (records, vocabulary, dropped rows).
        match: which records have a media file (:func:`~zorro.data.annotations.media.match_media`).
        clips: ``"trimmed"`` (files are the annotated windows: no start/end given to the
            decoder) or ``"full"`` (files are whole videos: the annotated start/end are used).
        templates: the name templates used (:class:`NameTemplate` or strings), recorded.
        annotation_files: the annotation files read, recorded.
        media_root: the media folder, recorded.

    Returns:
        a :class:`PrepareInputs`. ``extra_info`` holds ``dataset``, ``annotation_files``,
        ``media_root``, ``name_templates``, ``clips``, ``annotated`` (records parsed),
        ``dropped_counts``, ``filtered_counts``, ``ambiguous_media_names``; the dropped
        rows themselves (file, line, reason) are ``dropped_rows``.

    Raises:
        ValueError: an unknown ``clips`` kind; ``clips="full"`` for records without a window.
    """
    from zorro.data.prepare import PrepareSource

    if clips not in CLIP_KINDS:
        raise ValueError(f"clips must be one of {CLIP_KINDS}, got {clips!r}")
    sources = []
    for seg, path in match.found:
        if clips == "full":
            if seg.start is None:
                raise ValueError(f"clip {seg.id!r} has no annotated window; clips='full' needs start/end (use 'trimmed')")
            start, end = seg.start, seg.end
        else:
            start = end = None
        sources.append(PrepareSource(path=str(path), labels=tuple(seg.labels), start=start, end=end, meta=seg.meta()))
    names = [getattr(t, "template", str(t)) for t in templates]
    summary = parsed.summary()
    extra = {
        "dataset": dataset,
        "annotation_files": [str(f) for f in annotation_files],
        "media_root": None if media_root is None else str(media_root),
        "name_templates": names,
        "clips": clips,
        "annotated": len(parsed.records),
        "dropped_counts": summary["dropped"],
        "filtered_counts": summary["filtered"],
        "ambiguous_media_names": match.ambiguous,
    }
    missing = [_missing_entry(seg, names) for seg in match.missing]
    dropped = [d.to_dict() for d in parsed.dropped]
    filtered = sum(summary["filtered"].values())
    counts = {"rows": len(parsed.records) + len(dropped) + filtered, "annotated": len(parsed.records), "dropped_rows": len(dropped),
              "filtered_rows": filtered}
    return PrepareInputs(sources=sources, labels=list(parsed.labels), multi_label=parsed.multi_label, missing=missing, extra_info=extra,
                         dropped_rows=dropped, annotation_counts=counts)
