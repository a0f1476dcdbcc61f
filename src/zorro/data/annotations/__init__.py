"""Annotation records, media lookup and the streaming match of annotations to media files.

* :mod:`~zorro.data.annotations.records`: :class:`Segment` / :class:`SegmentRow` records, the
  dropped-row report, the streaming :class:`AnnotationReader`.
* :mod:`~zorro.data.annotations.media`: name templates and the media folder index.
* :mod:`~zorro.data.annotations.collect`: one streaming pass from annotation rows to the
  compact list of found clips, the missing ones and the dropped rows (``zorro prepare``).
* The parsers of each dataset live with everything else about it in
  :mod:`zorro.data.registry` (``audioset``, ``vggsound``, ``kinetics_sounds``, ``esc50``,
  ``urbansound8k``); they are re-exported here.

Every in-memory parser returns a :class:`ParseResult` of :class:`Segment` records plus the
rows it left out (:class:`Dropped`, with file, line and reason).
"""

from zorro.data.annotations.media import MEDIA_EXTENSIONS, MediaIndex, MediaMatch, NameTemplate, match_media, template_fields
from zorro.data.annotations.records import AnnotationReader, Dropped, ParseResult, Segment, SegmentRow

# the dataset parsers live in zorro.data.registry (which imports this package): re-exported
# lazily, on first use, so neither package needs the other half-initialised
_LAZY = {
    "AudioSetClass": "zorro.data.registry.audioset",
    "audioset_segment_id": "zorro.data.registry.audioset",
    "read_audioset_labels": "zorro.data.registry.audioset",
    "read_audioset_segments": "zorro.data.registry.audioset",
    "ESC50_FOLDS": "zorro.data.registry.esc50",
    "read_esc50": "zorro.data.registry.esc50",
    "kinetics_clip_id": "zorro.data.registry.kinetics_sounds",
    "kinetics_sounds_classes": "zorro.data.registry.kinetics_sounds",
    "read_class_list": "zorro.data.registry.kinetics_sounds",
    "read_kinetics_csv": "zorro.data.registry.kinetics_sounds",
    "scan_kinetics_tree": "zorro.data.registry.kinetics_sounds",
    "VGGSOUND_CLIP_SECONDS": "zorro.data.registry.vggsound",
    "read_vggsound": "zorro.data.registry.vggsound",
    "read_urbansound8k": "zorro.data.registry.urbansound8k",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AudioSetClass",
    "audioset_segment_id",
    "read_audioset_labels",
    "read_audioset_segments",
    "ESC50_FOLDS",
    "read_esc50",
    "kinetics_clip_id",
    "kinetics_sounds_classes",
    "read_class_list",
    "read_kinetics_csv",
    "scan_kinetics_tree",
    "MEDIA_EXTENSIONS",
    "MediaIndex",
    "MediaMatch",
    "NameTemplate",
    "match_media",
    "template_fields",
    "AnnotationReader",
    "Dropped",
    "ParseResult",
    "Segment",
    "SegmentRow",
    "VGGSOUND_CLIP_SECONDS",
    "read_vggsound",
    "read_urbansound8k",
]
