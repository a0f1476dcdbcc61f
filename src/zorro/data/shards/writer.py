"""Write tar shards in the WebDataset layout, each with its byte-offset index, atomically.

:class:`ShardWriter` writes one shard: members go to ``shard-NNNNNN.tar.tmp`` with fixed
headers (mtime 0, uid/gid 0, empty owner names, mode 0644, ustar format), so the same samples
give a byte-identical tar; :meth:`ShardWriter.commit` finishes the tar, fsyncs it, renames it
to ``shard-NNNNNN.tar``, then writes the index the same way. The index is the commit marker:
a tar without its index (or an index whose ``bytes`` disagree with the tar) is unfinished.

:func:`write_samples` writes a whole shard folder from in-memory samples (no media decoding):
the small writer tests use to make shards. The layout is described in
:mod:`zorro.data.shards.format`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from zorro.data.shards.format import (
    AUDIO_SUFFIXES,
    DATASET_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    LIST_FILES,
    JsonlWriter,
    encode_audio,
    encode_jpeg,
    frame_suffix,
    index_name,
    sample_key,
    shard_name,
    write_json_atomic,
)
from zorro.fileio import fsync_dir

__all__ = ["ShardWriter", "SampleData", "write_samples", "tmp_name"]

logger = logging.getLogger(__name__)

_MTIME = 0
_MODE = 0o644


def tmp_name(name: str) -> str:
    """Temporary name a file is written under before its atomic rename."""
    return name + ".tmp"


class ShardWriter:
    """One shard being written (see module doc).

    Args:
        out_dir: the output folder (must exist).
        number: the shard number (file ``shard_name(number, part)``).
        part: the part this shard belongs to (a folder prepared in parts), or None.
        extra_index: more top-level fields for the index (e.g. source range, fingerprint);
            ``shard``, ``format_version``, ``bytes``, ``num_samples``, ``label_ids``,
            ``sample_meta`` and ``samples`` are set by the writer.
    """

    def __init__(self, out_dir: str | os.PathLike, number: int, *, part: int | None = None,
                 extra_index: Mapping[str, Any] | None = None):
        self.out_dir = Path(out_dir)
        self.number = int(number)
        self.part = part
        self.name = shard_name(self.number, part)
        self.index_file = index_name(self.number, part)
        self.extra_index = dict(extra_index or {})
        self._tmp = self.out_dir / tmp_name(self.name)
        self._fh = open(self._tmp, "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples: list[dict[str, Any]] = []
        self.label_ids: list[list[int]] = []
        self.sample_meta: dict[str, list[Any]] = {}
        self._closed = False

    @property
    def num_samples(self) -> int:
        """Samples added so far."""
        return len(self.samples)

    @property
    def bytes_written(self) -> int:
        """Bytes of the tar so far (without the end-of-archive blocks)."""
        return self._fh.tell()

    def add(self, key: str, members: Sequence[tuple[str, bytes]], *, label_ids: Sequence[int] | None = None,
            meta: Mapping[str, Any] | None = None) -> None:
        """Append one sample: ``members`` is ``[(suffix, data), ...]`` in the order to store
        (suffixes without the leading dot, e.g. ``"json"``, ``"000.jpg"``; any suffix may
        be stored). ``label_ids`` (class ids of the sample) go to the index's ``label_ids``
        column; ``meta`` (a few JSON scalars, e.g. ``{"fold": 3}``) to its ``sample_meta``
        columns. Either is given for every sample of a shard or for none."""
        if self._closed:
            raise ValueError(f"shard {self.name} is already committed")
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key must be non-empty without '.' or '/', got {key!r}")
        if self.samples and (label_ids is None) != (len(self.label_ids) == 0):
            raise ValueError(f"shard {self.name}: label_ids must be given for every sample or for none")
        meta = dict(meta or {})
        if self.samples and set(meta) != set(self.sample_meta):
            raise ValueError(f"shard {self.name}: every sample needs the same meta fields {sorted(self.sample_meta)}, got {sorted(meta)}")
        entry: dict[str, list[int]] = {}
        for suffix, data in members:
            if not suffix or suffix.startswith(".") or "/" in suffix:
                raise ValueError(f"member suffix must be non-empty, without a leading '.' or '/', got {suffix!r}")
            if suffix in entry:
                raise ValueError(f"sample {key} has member suffix {suffix!r} twice")
            data = bytes(data)
            info = tarfile.TarInfo(f"{key}.{suffix}")
            info.size = len(data)
            info.mtime = _MTIME
            info.mode = _MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            header = info.tobuf(tarfile.USTAR_FORMAT, self._tar.encoding, self._tar.errors)
            data_offset = self._tar.offset + len(header)
            self._tar.addfile(info, io.BytesIO(data))
            entry[suffix] = [data_offset, len(data)]
        self.samples.append({"key": key, "members": entry})
        if label_ids is not None:
            self.label_ids.append([int(c) for c in label_ids])
        for name, value in meta.items():
            self.sample_meta.setdefault(name, []).append(value)

    def commit(self) -> dict[str, Any]:
        """Finish the tar, fsync, rename it into place, then write the index the same way.

        Returns the index (as written)."""
        if self._closed:
            raise ValueError(f"shard {self.name} is already committed")
        self._tar.close()  # end-of-archive blocks, padded to the record size
        self._fh.flush()
        os.fsync(self._fh.fileno())
        size = self._fh.tell()
        self._fh.close()
        self._closed = True
        final = self.out_dir / self.name
        os.replace(self._tmp, final)
        fsync_dir(self.out_dir)
        index = {
            "shard": self.name,
            "format_version": FORMAT_VERSION,
            "bytes": size,
            "num_samples": len(self.samples),
            **{k: v for k, v in self.extra_index.items() if k not in ("label_ids", "sample_meta", "samples")},
        }
        if self.label_ids:  # before the member table: samplers read them from the head of the file
            index["label_ids"] = self.label_ids
        if self.sample_meta:
            index["sample_meta"] = self.sample_meta
        index["samples"] = self.samples
        write_json_atomic(self.out_dir / self.index_file, index, compact=True)
        return index

    def abort(self) -> None:
        """Drop the unfinished shard (closes and removes the temporary file)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._fh.close()
        finally:
            try:
                self._tmp.unlink()
            except FileNotFoundError:
                pass


@dataclass
class SampleData:
    """One in-memory sample for :func:`write_samples`.

    Attributes:
        labels: class names.
        audio: ``(samples,)`` float waveform in [-1, 1] or None (no audio member).
        frames: ``(T, H, W, 3)`` uint8 RGB frames or None (no jpg members).
        start, end: the window (s) recorded in the sample's JSON.
        path: source path recorded in the JSON.
        padded: recorded in the JSON.
        meta: annotation fields recorded in the JSON.
    """

    labels: tuple[str, ...]
    audio: np.ndarray | None = None
    frames: np.ndarray | None = None
    start: float = 0.0
    end: float = 2.0
    path: str = ""
    padded: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def sample_members(
    sample_json: Mapping[str, Any],
    audio: np.ndarray | None,
    frames_jpeg: Sequence[bytes] | None,
    *,
    sample_rate: int,
    audio_format: str,
) -> list[tuple[str, bytes]]:
    """The members of one sample in storage order: JSON, audio (if any), frames (if any)."""
    if audio_format not in AUDIO_SUFFIXES:
        raise ValueError(f"audio_format must be one of {AUDIO_SUFFIXES}, got {audio_format!r}")
    members = [("json", json.dumps(dict(sample_json), sort_keys=True).encode("utf-8"))]
    if audio is not None:
        members.append((audio_format, encode_audio(audio, sample_rate, audio_format)))
    for i, jpg in enumerate(frames_jpeg or ()):
        members.append((frame_suffix(i), jpg))
    return members


def write_samples(
    out_dir: str | os.PathLike,
    samples: Sequence[SampleData],
    *,
    labels: Sequence[str],
    multi_label: bool = False,
    samples_per_shard: int = 4,
    sample_rate: int = 16000,
    audio_format: str = "wav",
    jpeg_quality: int = 90,
    fps: float | None = None,
    unreadable: Sequence[Mapping[str, str]] = (),
    index_meta: Sequence[str] = (),
) -> dict[str, Any]:
    """Write a complete shard folder (shards, indexes, ``dataset.json``, ``unreadable.jsonl``)
    from in-memory samples, without decoding media: for tests and tools. Returns the
    ``dataset.json`` contents.

    ``fps`` defaults to frames / (end - start) of each sample. Every label must be in
    ``labels``. ``index_meta`` names ``meta`` fields (present in every sample) copied into
    each index's ``sample_meta`` (e.g. ``("fold",)``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {name: i for i, name in enumerate(labels)}
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    shards = []
    writer = None
    for k, s in enumerate(samples):
        if writer is None:
            writer = ShardWriter(out, len(shards), extra_index={"first_sample": k})
        for lab in s.labels:
            if lab not in vocab:
                raise ValueError(f"sample {k} label {lab!r} is not in labels")
        missing_meta = [f for f in index_meta if f not in s.meta]
        if missing_meta:
            raise ValueError(f"sample {k} has no meta field {missing_meta} for index_meta")
        frames = None if s.frames is None else np.asarray(s.frames)
        if frames is not None and (frames.ndim != 4 or frames.shape[-1] != 3):
            raise ValueError(f"sample {k} frames must be (T, H, W, 3) uint8, got {frames.shape}")
        nf = 0 if frames is None else int(frames.shape[0])
        dur = float(s.end) - float(s.start)
        ids = [vocab[lab] for lab in s.labels]
        info = {
            "path": s.path,
            "start": float(s.start),
            "end": float(s.end),
            "labels": list(s.labels),
            "label_ids": ids,
            "has_audio": s.audio is not None,
            "has_video": frames is not None,
            "padded": bool(s.padded),
            "sample_rate": int(sample_rate),
            "fps": float(fps) if fps is not None else (nf / dur if nf and dur > 0 else 0.0),
            "num_frames": nf,
            "width": 0 if frames is None else int(frames.shape[2]),
            "height": 0 if frames is None else int(frames.shape[1]),
            "source": k,
            "window": 0,
            "meta": dict(s.meta),
        }
        jpgs = None if frames is None else [encode_jpeg(f, jpeg_quality) for f in frames]
        writer.add(sample_key(k), sample_members(info, s.audio, jpgs, sample_rate=sample_rate, audio_format=audio_format),
                   label_ids=ids, meta={f: s.meta[f] for f in index_meta})
        if writer.num_samples >= samples_per_shard:
            idx = writer.commit()
            shards.append({"name": writer.name, "index": writer.index_file, "num_samples": idx["num_samples"], "bytes": idx["bytes"]})
            writer = None
    if writer is not None:
        idx = writer.commit()
        shards.append({"name": writer.name, "index": writer.index_file, "num_samples": idx["num_samples"], "bytes": idx["bytes"]})
    n = len(samples)
    with JsonlWriter(out / LIST_FILES["unreadable"]) as lines:
        lines.write_all(dict(u) for u in unreadable)
    desc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_samples": n,
        "labels": list(labels),
        "multi_label": bool(multi_label),
        "shards": shards,
        "counts": {"sources": n + len(unreadable), "written": n, "unreadable": len(unreadable), "missing": 0, "samples": n,
                   "skipped_windows": 0},
        "lists": {"unreadable": LIST_FILES["unreadable"]},
        "settings": {"sample_rate": int(sample_rate), "audio_format": audio_format, "jpeg_quality": int(jpeg_quality), "writer": "write_samples"},
        "versions": {},
        "extra": {},
    }
    write_json_atomic(out / DATASET_JSON, desc)
    return desc
