"""VGGSound's annotation parser; it lives in :mod:`zorro.data.registry.vggsound` (one module
per dataset) and is re-exported here, where it was first published."""

from zorro.data.registry.vggsound import VGGSOUND_CLIP_SECONDS, VGGSOUND_SPLITS, VGGSound, read_vggsound  # noqa: F401

__all__ = ["VGGSound", "read_vggsound", "VGGSOUND_CLIP_SECONDS", "VGGSOUND_SPLITS"]
