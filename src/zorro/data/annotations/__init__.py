"""Parsers for the annotation files of public audio-visual datasets, as they are published,
and the lookup of each annotated clip's media file.

* :mod:`~zorro.data.annotations.audioset`: ``class_labels_indices.csv`` and the segment CSVs.
* :mod:`~zorro.data.annotations.vggsound`: ``vggsound.csv``.
* :mod:`~zorro.data.annotations.kinetics`: Kinetics-400 CSVs and trees, the Kinetics-Sounds list.
* :mod:`~zorro.data.annotations.esc50`: ``meta/esc50.csv``.
* :mod:`~zorro.data.annotations.media`: name templates and the media folder index.

Every parser returns a :class:`ParseResult` of :class:`Segment` records plus the rows it
left out (:class:`Dropped`, with file, line and reason).
"""

from zorro.data.annotations.audioset import AudioSetClass, audioset_segment_id, read_audioset_labels, read_audioset_segments
from zorro.data.annotations.esc50 import ESC50_FOLDS, read_esc50
from zorro.data.annotations.kinetics import (
    kinetics_clip_id,
    kinetics_sounds_classes,
    read_class_list,
    read_kinetics_csv,
    scan_kinetics_tree,
)
from zorro.data.annotations.media import MEDIA_EXTENSIONS, MediaIndex, MediaMatch, NameTemplate, match_media, template_fields
from zorro.data.annotations.records import Dropped, ParseResult, Segment
from zorro.data.annotations.vggsound import VGGSOUND_CLIP_SECONDS, read_vggsound

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
    "Dropped",
    "ParseResult",
    "Segment",
    "VGGSOUND_CLIP_SECONDS",
    "read_vggsound",
]
