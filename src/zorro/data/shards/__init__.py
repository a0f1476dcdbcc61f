"""Prepared shards: clips decoded once into tar files in the WebDataset layout.

:mod:`zorro.data.shards.format` defines the layout (names, index, ``dataset.json``, member
codecs); :mod:`zorro.data.shards.writer` writes shards. ``zorro prepare``
(:func:`zorro.data.prepare.prepare_shards`) fills a folder from media files.
"""

from zorro.data.shards.format import (
    DATASET_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    decode_audio,
    decode_jpeg,
    encode_audio,
    encode_jpeg,
    frame_suffix,
    index_name,
    is_frame_suffix,
    read_dataset_json,
    read_index,
    read_members,
    sample_key,
    shard_name,
)
from zorro.data.shards.writer import SampleData, ShardWriter, write_samples

__all__ = [
    "DATASET_JSON",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "decode_audio",
    "decode_jpeg",
    "encode_audio",
    "encode_jpeg",
    "frame_suffix",
    "index_name",
    "is_frame_suffix",
    "read_dataset_json",
    "read_index",
    "read_members",
    "sample_key",
    "shard_name",
    "SampleData",
    "ShardWriter",
    "write_samples",
]
