"""Media pipeline: time-aligned audio-video clips decoded on the fly from media files.

Main entry points: :func:`read_clip` (one clip from one file), :class:`ClipDataset`
(manifest or folder-per-class datasets), :class:`ShardDataset` and :class:`ShardSampler`
(training from shards prepared by ``zorro prepare``), :func:`collate_clips` and
:func:`split_by_modality` (batching with missing modalities), :class:`SkipTracker`
(counting unreadable files across DataLoader workers), :class:`LabelVocab`.
"""

from zorro.data.collate import SkipTracker, batch_modalities, collate_clips, modality_inputs, split_by_modality
from zorro.data.datasets import ClipDataset, LabelVocab, ManifestEntry, Skipped, read_manifest, scan_folder
from zorro.data.shards.reader import ShardDataset
from zorro.data.shards.sampler import ShardSampler
from zorro.data.decode import Clip, DecodeError, MediaInfo, MediaReader, available_backends, probe, read_clip
from zorro.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CropBox,
    center_crop_box,
    normalize_video,
    random_resized_crop_box,
)

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
    "center_crop_box",
    "random_resized_crop_box",
    "normalize_video",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]
