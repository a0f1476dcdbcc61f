"""Media pipeline: time-aligned audio-video clips decoded on the fly from media files.

Main entry points: :func:`read_clip` (one clip from one file), :class:`ClipDataset`
(manifest or folder-per-class datasets), :class:`ShardDataset` and :class:`ShardSampler`
(training from shards prepared by ``zorro prepare``), :func:`collate_clips` and
:func:`split_by_modality` (batching with missing modalities), :class:`SkipTracker`
(counting unreadable files across DataLoader workers), :class:`LabelVocab`,
:class:`VideoTransform` (the crop / resize / normalise settings every dataset shares).
The published datasets zorro knows -- parsers, defaults, protocols -- are
:mod:`zorro.data.registry`, one module each.
"""

import importlib

# Names are imported on first use (PEP 562), so ``import zorro.data.registry`` or a
# ``zorro prepare --dry-run`` does not pay for torch and the decoders.
_LAZY = {
    "SkipTracker": "collate", "collate_clips": "collate", "split_by_modality": "collate",
    "batch_modalities": "collate", "modality_inputs": "collate",
    "ClipDataset": "datasets", "LabelVocab": "datasets", "ManifestEntry": "datasets", "Skipped": "datasets",
    "read_manifest": "datasets", "scan_folder": "datasets",
    "ShardDataset": "shards.reader", "ShardSampler": "shards.sampler",
    "Clip": "decode", "DecodeError": "decode", "MediaInfo": "decode", "MediaReader": "decode", "available_backends": "decode",
    "probe": "decode", "read_clip": "decode",
    "IMAGENET_MEAN": "transforms", "IMAGENET_STD": "transforms", "CropBox": "transforms", "VideoTransform": "transforms",
    "center_crop_box": "transforms", "normalize_video": "transforms", "random_resized_crop_box": "transforms",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Clip",
    "DecodeError",
    "MediaInfo",
    "MediaReader",
    "available_backends",
    "probe",
    "read_clip",
    "ClipDataset",
    "ShardDataset",
    "ShardSampler",
    "LabelVocab",
    "ManifestEntry",
    "Skipped",
    "read_manifest",
    "scan_folder",
    "collate_clips",
    "split_by_modality",
    "batch_modalities",
    "modality_inputs",
    "SkipTracker",
    "CropBox",
    "VideoTransform",
    "center_crop_box",
    "random_resized_crop_box",
    "normalize_video",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
