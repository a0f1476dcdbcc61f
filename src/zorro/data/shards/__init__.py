"""Prepared shards: clips decoded once into tar files in the WebDataset layout.

:mod:`zorro.data.shards.format` defines the layout (names, index, ``dataset.json`` and its
lists, member codecs) and reads it (every version); :mod:`zorro.data.shards.writer` writes
shards. ``zorro prepare`` (:func:`zorro.data.prepare.prepare_shards`) fills a folder from
media files; :mod:`zorro.data.accounting` writes its ``dataset.json`` and merges parts.
"""

from zorro.data.shards.format import (
    DATASET_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    LIST_FILES,
    READABLE_VERSIONS,
    JsonlWriter,
    decode_audio,
    decode_jpeg,
    encode_audio,
    encode_jpeg,
    frame_suffix,
    index_name,
    is_frame_suffix,
    iter_list,
    read_dataset_json,
    read_index,
    read_index_head,
    read_members,
    sample_key,
    shard_name,
)
from zorro.data.shards.writer import SampleData, ShardWriter, write_samples

__all__ = [
    "DATASET_JSON",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LIST_FILES",
    "READABLE_VERSIONS",
    "JsonlWriter",
    "decode_audio",
    "decode_jpeg",
    "encode_audio",
    "encode_jpeg",
    "frame_suffix",
    "index_name",
    "is_frame_suffix",
    "iter_list",
    "read_dataset_json",
    "read_index",
    "read_index_head",
    "read_members",
    "sample_key",
    "shard_name",
    "SampleData",
    "ShardWriter",
    "write_samples",
]
