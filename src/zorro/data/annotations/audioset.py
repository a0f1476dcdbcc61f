"""AudioSet's annotation parser; it lives in :mod:`zorro.data.registry.audioset` (one module
per dataset) and is re-exported here, where it was first published."""

from zorro.data.registry.audioset import (  # noqa: F401
    AudioSetClass,
    AudioSetSegments,
    audioset_segment_id,
    class_names,
    read_audioset_labels,
    read_audioset_segments,
)

__all__ = ["AudioSetClass", "AudioSetSegments", "read_audioset_labels", "read_audioset_segments", "audioset_segment_id", "class_names"]
