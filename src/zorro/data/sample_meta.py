"""The metadata of every sample of a prepared shard folder, and subsets selected by it.

Recipes need to know, per sample, its labels and annotation fields without decoding any
audio or frames: AudioSet's balanced sampler needs the label ids, ESC-50's cross-validation
the fold of each clip. :func:`sample_metadata` reads only the small ``KEY.json`` member of
each sample (``os.pread`` at the offsets of the shard indexes) and :func:`select_samples`
picks sample positions by an annotation field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

__all__ = ["sample_metadata", "select_samples"]


def sample_metadata(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``KEY.json`` of every sample, in the global sample order, and ``dataset.json``.

    Args:
        folder: an output folder of ``zorro prepare``.

    Returns:
        ``(samples, info)``: per sample its JSON dict (``label_ids``, ``meta``, ``path``, ...);
        the contents of ``dataset.json``.

    Raises:
        ValueError: not a prepared shard folder, an index whose sample count differs from
            ``dataset.json``, a sample without a JSON member, unreadable JSON.
        FileNotFoundError: a shard or index listed in ``dataset.json`` does not exist.
    """
    from zorro.data.shards.format import read_dataset_json, read_index, read_members

    folder = Path(folder)
    info = read_dataset_json(folder)
    out: list[dict[str, Any]] = []
    for shard in info["shards"]:
        index = read_index(folder / shard["index"])
        if len(index["samples"]) != int(shard["num_samples"]):
            raise ValueError(f"{folder / shard['index']}: {len(index['samples'])} samples, dataset.json says {shard['num_samples']}")
        fd = os.open(folder / shard["name"], os.O_RDONLY)
        try:
            for sample in index["samples"]:
                where = f"{folder / shard['name']}: sample {sample.get('key')}"
                if "json" not in sample.get("members", {}):
                    raise ValueError(f"{where} has no json member")
                try:
                    meta = json.loads(read_members(fd, sample, ("json",))["json"])
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise ValueError(f"{where}: unreadable JSON ({exc})") from None
                if not isinstance(meta, dict):
                    raise ValueError(f"{where}: JSON is not an object")
                out.append(meta)
        finally:
            os.close(fd)
    return out, info


def select_samples(samples: list[dict[str, Any]], field: str, keep: Container[Any] | Callable[[Any], bool]) -> list[int]:
    """Positions of the samples whose annotation field ``meta[field]`` is in ``keep`` (or for
    which ``keep(value)`` is true).

    Args:
        samples: per-sample JSON dicts (:func:`sample_metadata`).
        field: a key of each sample's ``meta`` (e.g. ``"fold"``).
        keep: allowed values, or a predicate.

    Returns:
        sorted sample positions.

    Raises:
        ValueError: a sample without that field (naming the field, the sample and the fields it has).
    """
    test = keep if callable(keep) else (lambda v: v in keep)
    out = []
    for i, s in enumerate(samples):
        meta = s.get("meta") or {}
        if field not in meta:
            raise ValueError(f"sample {i} ({s.get('path')}) has no annotation field {field!r}; its fields: {sorted(meta)}")
        if test(meta[field]):
            out.append(i)
    return out
