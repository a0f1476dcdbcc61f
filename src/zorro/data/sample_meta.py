"""Per-sample labels and annotation fields of a prepared shard folder, without decoding media.

Recipes need to know, per sample, its labels and a few annotation fields: AudioSet's
balanced sampler needs the label ids, ESC-50's and UrbanSound8K's cross-validation the fold
of each clip. A format-2 folder has them in its shard indexes (``label_ids`` and
``sample_meta``, before the member table): :func:`index_label_ids` and
:func:`index_meta_field` read only the head of each index file, so a 2M-sample folder is
ready in seconds. :func:`sample_metadata` reads every sample's ``KEY.json`` member instead
(``os.pread`` at the offsets of the indexes): the way for format-1 folders and for fields
the indexes do not carry. :func:`select_samples` picks sample positions by an annotation
field.

:class:`LabelIds` holds the label ids of millions of samples in two arrays (offsets and
values, "compressed sparse rows"), about 12 bytes a sample instead of a Python list each.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["LabelIds", "index_label_ids", "index_meta_field", "sample_metadata", "select_samples"]


class LabelIds(Sequence):
    """The label ids of ``N`` samples: sample ``i`` has ``values[offsets[i]:offsets[i + 1]]``.

    Args:
        offsets: ``(N + 1,)`` int64, non-decreasing, ``offsets[0] == 0``.
        values: ``(offsets[-1],)`` int class ids.

    A sequence of lists of ints (``ids[i]`` is a list); equal to any sequence of the same
    lists.
    """

    def __init__(self, offsets: np.ndarray, values: np.ndarray) -> None:
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.values = np.ascontiguousarray(values, dtype=np.int32)
        if self.offsets.ndim != 1 or self.offsets.size < 1 or self.offsets[0] != 0 or self.offsets[-1] != self.values.size:
            raise ValueError("LabelIds: offsets must start at 0 and end at len(values)")
        if self.offsets.size > 1 and (np.diff(self.offsets) < 0).any():
            raise ValueError("LabelIds: offsets must not decrease")

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> "LabelIds":
        """From a list of per-sample id lists."""
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
        return cls(offsets, values.astype(np.int32))

    @classmethod
    def concatenate(cls, parts: Sequence["LabelIds"]) -> "LabelIds":
        """The samples of ``parts`` one after the other."""
        if not parts:
            return cls(np.zeros(1, np.int64), np.zeros(0, np.int32))
        values = np.concatenate([p.values for p in parts])
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        offsets = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(offsets, values)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, i: int) -> list[int]:  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return self.values[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelIds):
            return np.array_equal(self.offsets, other.offsets) and np.array_equal(self.values, other.values)
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(list(a) == list(b) for a, b in zip(self, other))
        return NotImplemented

    def sample_index(self) -> np.ndarray:
        """``(len(values),)`` int64: the sample each value belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.offsets))

    def map(self, mapping: np.ndarray) -> "LabelIds":
        """The same samples with every id ``c`` replaced by ``mapping[c]``."""
        return LabelIds(self.offsets, np.asarray(mapping)[self.values] if self.values.size else self.values)

    def take(self, indices: Sequence[int] | np.ndarray) -> "LabelIds":
        """The samples at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        lengths = ends - starts
        offsets = np.zeros(idx.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] == 0:
            return LabelIds(offsets, np.zeros(0, np.int32))
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return LabelIds(offsets, self.values[gather])


def _index_heads(folder: Path, info: Mapping[str, Any]) -> Iterator[tuple[Mapping[str, Any], dict[str, Any]]]:
    from zorro.data.shards.format import read_index_head  # noqa: PLC0415

    for shard in info["shards"]:
        path = folder / shard["index"]
        head = read_index_head(path, chunk=1 << 14)  # the head (label ids of a few hundred samples) is a few KB
        yield shard, head


def index_label_ids(folder: str | os.PathLike, info: Mapping[str, Any] | None = None) -> LabelIds | None:
    """The label ids of every sample of a prepared folder from its shard indexes alone (ids
    into the folder's own ``labels``, in the global sample order), or None when an index has
    none (a format-1 folder: read the samples, :func:`sample_metadata`).

    Raises:
        ValueError: an index whose sample count or ``label_ids`` length differs from
            ``dataset.json``, or an unreadable index.
        FileNotFoundError: an index listed in ``dataset.json`` does not exist.
    """
    from zorro.data.shards.format import read_dataset_json  # noqa: PLC0415

    folder = Path(folder)
    info = read_dataset_json(folder) if info is None else info
    parts = []
    for shard, head in _index_heads(folder, info):
        ids = head.get("label_ids")
        if ids is None:
            return None
        if len(ids) != int(shard["num_samples"]):
            raise ValueError(f"{folder / shard['index']}: {len(ids)} label_ids, dataset.json says {shard['num_samples']} samples")
        parts.append(LabelIds.from_lists(ids))
    return LabelIds.concatenate(parts)


def index_meta_field(folder: str | os.PathLike, field: str, info: Mapping[str, Any] | None = None) -> list[Any] | None:
    """The annotation field ``field`` of every sample from the shard indexes' ``sample_meta``
    (in the global sample order), or None when an index does not carry it.

    Raises:
        ValueError: a column whose length differs from the shard's sample count.
    """
    from zorro.data.shards.format import read_dataset_json  # noqa: PLC0415

    folder = Path(folder)
    info = read_dataset_json(folder) if info is None else info
    out: list[Any] = []
    for shard, head in _index_heads(folder, info):
        column = (head.get("sample_meta") or {}).get(field)
        if column is None:
            return None
        if len(column) != int(shard["num_samples"]):
            raise ValueError(f"{folder / shard['index']}: sample_meta[{field!r}] has {len(column)} values for {shard['num_samples']} samples")
        out.extend(column)
    return out


def sample_metadata(folder: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``KEY.json`` of every sample, in the global sample order, and ``dataset.json``.

    Reads one member per sample: use :func:`index_label_ids` / :func:`index_meta_field`
    where the indexes carry what is needed.

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
    from zorro.data.shards.format import read_dataset_json, read_index, read_members  # noqa: PLC0415

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
        samples: per-sample JSON dicts (:func:`sample_metadata`), or the field's values
            themselves (:func:`index_meta_field`; then ``field`` only names it in errors).
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
        if isinstance(s, dict):
            meta = s.get("meta") or {}
            if field not in meta:
                raise ValueError(f"sample {i} ({s.get('path')}) has no annotation field {field!r}; its fields: {sorted(meta)}")
            value = meta[field]
        else:
            value = s
            if value is None:
                raise ValueError(f"sample {i} has no annotation field {field!r}")
        if test(value):
            out.append(i)
    return out
