"""Datasets of audio-video clips over a manifest (CSV / JSONL) or a folder-per-class tree.

Each item opens its file inside ``__getitem__`` (so DataLoader workers each own their
decoders), decodes one window and returns a dict::

    {"audio": (samples,) float32 or None, "video": (3, T, S, S) float32 normalised or None,
     "label": int (single-label) or (num_classes,) float32 multi-hot,
     "index": int, "path": str, "start": float (s), "padded": bool,
     "audio_valid_samples": int (samples of real audio; the rest of the window is zero padding)}

plus, for each extra modality the dataset is asked for (``extra_modalities``, see
:mod:`zorro.data.modalities`), ``<name>``: ``(L,)`` int64 token ids (text) or ``(T, D)``
float32 (sequence), None when the clip lacks it, and ``has_<name>``: bool.

A file shorter than the window is read from its start (or its segment's ``start``): the
window begins there and its end is padding, whatever the window placement.

A file that cannot be decoded gives a :class:`Skipped` record instead (see
:mod:`zorro.data.collate`: the collate function drops it and counts it in the batch, and
:class:`~zorro.data.collate.SkipTracker` in the main process logs each bad file once and
reports the count per epoch).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from zorro.data.annotations.media import MEDIA_EXTENSIONS
from zorro.data.decode import DecodeError, MediaReader, decode_time_limit
from zorro.data.modalities import check_extra, load_sequence
from zorro.data.transforms import CROP_RATIO, CROP_SCALE, HFLIP_PROB, IMAGENET_MEAN, IMAGENET_STD, VideoTransform
from zorro.tokenizer import ByteTokenizer

logger = logging.getLogger(__name__)



class LabelVocab:
    """An ordered list of class names; ``index(name)`` is the class id.

    Save it with the run (``save``/``load`` or ``to_json``/``from_json``) so ids stay fixed.
    """

    def __init__(self, names: Sequence[str]):
        names = [str(n) for n in names]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"label names must be unique, duplicated: {dup[:5]}")
        if not names:
            raise ValueError("a LabelVocab needs at least one label")
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def from_labels(cls, labels: Iterable[str | Sequence[str]]) -> "LabelVocab":
        """Vocabulary of the sorted unique names in ``labels`` (strings or lists of strings)."""
        seen = set()
        for lab in labels:
            if isinstance(lab, str):
                seen.add(lab)
            else:
                seen.update(str(x) for x in lab)
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and other.names == self.names

    def index(self, name: str) -> int:
        """Class id of ``name`` (ValueError naming the label and listing the vocabulary if unknown)."""
        try:
            return self._index[str(name)]
        except KeyError:
            raise ValueError(f"unknown label {name!r}; the vocabulary has {self.describe()}") from None

    def describe(self, limit: int = 20) -> str:
        """``"10 labels: ['a', 'b', ...]"``: the count and the first ``limit`` names, for messages."""
        shown = self.names[:limit]
        more = f" and {len(self) - limit} more" if len(self) > limit else ""
        return f"{len(self)} label{'s' if len(self) != 1 else ''}: {shown}{more}"

    def unknown_labels_error(self, unknown: Iterable[str], where: str) -> ValueError:
        """The error for labels of ``where`` (a manifest, a shard folder) missing from this
        vocabulary: names up to 20 of them and lists the vocabulary (first 20 + count)."""
        missing = sorted({str(u) for u in unknown})
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        return ValueError(
            f"{where} has {len(missing)} unknown label{'s' if len(missing) != 1 else ''}, not in the given vocabulary: {missing[:20]}{more}; "
            f"the vocabulary (e.g. a run's labels.json) has {self.describe()}. Labels are matched as text, exactly "
            f"(see docs/data.md, 'Labels and a run's vocabulary')"
        )

    def to_json(self) -> str:
        """JSON text ``{"labels": [...]}``."""
        return json.dumps({"labels": self.names}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "LabelVocab":
        """Inverse of :meth:`to_json`."""
        obj = json.loads(text)
        if not isinstance(obj, dict) or not isinstance(obj.get("labels"), list):
            raise ValueError('label vocabulary JSON must be an object {"labels": [names...]}')
        return cls(obj["labels"])

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelVocab":
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ManifestEntry:
    """One media file: ``labels`` (class names), optional segment ``start``/``end`` (s), and
    ``extra``: the values of its extra modality columns, ``name -> str`` (a ``text``
    column's string, a ``sequence`` column's ``.npy`` path), only those the clip has."""

    path: str
    labels: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Skipped:
    """What ``__getitem__`` returns for an unreadable file (dropped and counted by the
    collate function)."""

    index: int
    path: str
    reason: str


def _split_labels(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    text = str(value).strip()
    if not text:
        return ()
    for sep in (";", "|"):
        if sep in text:
            return tuple(p.strip() for p in text.split(sep) if p.strip())
    return (text,)


def _opt_float(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}") from None


def _looks_like_a_path(text: str) -> bool:
    """Whether a CSV cell reads as a media file name (a header row was probably left out)."""
    return Path(text.strip()).suffix.lower() in MEDIA_EXTENSIONS or "/" in text


def _extra_values(row: dict[str, Any], extra: dict[str, str], base: Path, where: str) -> dict[str, str]:
    """The extra modality values of one manifest row: non-empty cells of the declared
    columns; ``sequence`` paths resolved against ``base``."""
    out = {}
    for name, kind in extra.items():
        value = row.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{where}: column {name!r} must hold a string ({'the text' if kind == 'text' else 'a .npy path'}), got {value!r}")
        if not value.strip():
            continue
        if kind == "sequence":
            value = value.strip()
            value = value if os.path.isabs(value) else str(base / value)
        out[name] = value
    return out


def read_manifest(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                  modalities: Mapping[str, Any] | None = None) -> list[ManifestEntry]:
    """Read a manifest: CSV with a header or JSON Lines (by extension ``.jsonl``/``.json``),
    or a folder-per-class tree ``path/<class>/<file>`` (see :func:`scan_folder`).

    Columns/keys: ``path`` (relative paths are resolved against ``root``, default the
    manifest's folder), ``label`` (one name) or ``labels`` (a list in JSONL; in CSV names
    separated by ``;`` or ``|``), optional ``start`` and ``end`` (s). ``root`` does not apply
    to a folder (its files are found inside it).

    ``modalities`` (``name -> kind``, kinds ``"text"`` and ``"sequence"``; see
    :mod:`zorro.data.modalities`) names the columns that hold extra modalities: each
    entry's ``extra`` gets the non-empty ones (a ``text`` column's string; a ``sequence``
    column's ``.npy`` path, resolved like ``path``). Other columns are ignored. How many
    rows lack each declared column is logged (a column the manifest lacks entirely with
    a warning).
    """
    extra = check_extra(modalities)
    mpath = Path(path)
    if mpath.is_dir():
        if extra:
            raise ValueError(f"{str(mpath)!r} is a folder-per-class tree: it has no columns for the extra modalities {list(extra)} (use a CSV/JSONL manifest)")
        if (mpath / "dataset.json").is_file():
            raise ValueError(f"{str(mpath)!r} is a prepared shard folder, not media: read it with ShardDataset (data.train_shards / data.eval_shards in a training config)")
        return scan_folder(mpath)
    if not mpath.is_file():
        raise ValueError(f"manifest {str(mpath)!r} does not exist (give a CSV/JSONL manifest or a folder-per-class tree)")
    base = Path(root) if root is not None else mpath.parent
    rows: list[dict[str, Any]] = []
    if mpath.suffix.lower() in (".jsonl", ".json"):
        for lineno, line in enumerate(mpath.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{mpath}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{mpath}:{lineno}: expected a JSON object per line")
            rows.append(obj)
    else:
        with mpath.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ValueError(
                    f"{mpath}: a CSV manifest starts with a header row naming its columns, one of them 'path' "
                    f"(e.g. 'path,label'); its first row is {reader.fieldnames}"
                    + (", which looks like data: add the header line" if reader.fieldnames and _looks_like_a_path(reader.fieldnames[0]) else "")
                    + " (see docs/data.md, 'Manifests')"
                )
            rows = list(reader)
    entries = []
    for i, row in enumerate(rows, 1):
        p = row.get("path")
        if not p:
            raise ValueError(f"{mpath}: row {i} has no 'path'")
        labels = _split_labels(row.get("labels")) or _split_labels(row.get("label"))
        start = _opt_float(row.get("start"), f"{mpath}: row {i} start")
        end = _opt_float(row.get("end"), f"{mpath}: row {i} end")
        if start is not None and end is not None and end <= start:
            raise ValueError(f"{mpath}: row {i} has end {end} <= start {start}")
        full = Path(p) if os.path.isabs(p) else base / p
        values = _extra_values(row, extra, base, f"{mpath}: row {i}") if extra else {}
        entries.append(ManifestEntry(str(full), labels, start, end, values))
    for name in extra:
        have = sum(name in e.extra for e in entries)
        if not any(name in row for row in rows):
            logger.warning("%s has no %r column: none of its %d clips has the %s modality", mpath, name, len(entries), name)
        else:
            logger.info("%s: %d of %d clips have %r (%d without)", mpath, have, len(entries), name, len(entries) - have)
    return entries


def scan_folder(root: str | os.PathLike, *, extensions: Sequence[str] = MEDIA_EXTENSIONS) -> list[ManifestEntry]:
    """Entries of a folder-per-class tree ``root/<class name>/<file>`` (sorted, recursive
    inside each class folder)."""
    rootp = Path(root)
    if not rootp.is_dir():
        raise ValueError(f"dataset root {str(rootp)!r} is not a directory")
    exts = {e.lower() for e in extensions}
    entries = []
    for cls_dir in sorted(p for p in rootp.iterdir() if p.is_dir()):
        for f in sorted(cls_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in exts:
                entries.append(ManifestEntry(str(f), (cls_dir.name,)))
    if not entries:
        raise ValueError(f"no media files with extensions {sorted(exts)} under {str(rootp)!r}")
    return entries


class ClipDataset(Dataset):
    """Clips decoded on the fly from a list of :class:`ManifestEntry`.

    Args:
        entries: the files (see :func:`read_manifest`, :func:`scan_folder`).
        vocab: label vocabulary; built from the entries when None (save it with the run).
        multi_label: labels become ``(num_classes,)`` float multi-hot vectors instead of ints.
        train: random clip start, random-resized crop and flip; otherwise fixed clips
            (``clips_per_video`` evenly spaced, centred when 1) and a centre crop. In eval the
            dataset has ``len(entries) * clips_per_video`` items (item ``i`` is clip
            ``i % clips_per_video`` of file ``i // clips_per_video``).
        duration, num_frames, image_size, sample_rate: see :func:`zorro.data.read_clip`.
        audio, video: decode these modalities (a file lacking one still yields the other).
        mean, std: per-channel video normalisation (default ImageNet).
        scale, ratio, hflip_prob: random-resized-crop parameters (training only); these,
            ``image_size`` and ``mean``/``std`` form the dataset's
            :class:`~zorro.data.transforms.VideoTransform` (``.transform``).
        seed: base seed; item randomness depends only on ``(seed, epoch, index)``, so results
            do not depend on worker count or order. Call :meth:`set_epoch` each epoch.
        backend: decoder backend (``"pyav"``, ``"torchcodec"``, ``"auto"``).
        seek_mode, fast_decode: decoding trade-offs, see :class:`zorro.data.MediaReader`
            (defaults: exact frames, exact pixels).
        decode_time_limit: most wall-clock seconds one item may spend opening and decoding
            its file; past it the item is skipped and counted like an unreadable file
            (reason: the limit). In a DataLoader worker, a decode stuck inside one FFmpeg
            call far past the limit ends the worker with an error naming the file. None: no
            limit. See :mod:`zorro.data.decode.time_limit`.
        extra_modalities: the extra modalities to return, ``name -> kind`` (``"text"``,
            ``"sequence"``; a model's modality table is accepted, see
            :func:`zorro.data.modalities.check_extra`), read from the entries' ``extra``
            (:func:`read_manifest` with ``modalities=``). Each item gets ``<name>`` (None when
            the entry lacks it) and ``has_<name>``. A sequence file that cannot be read makes
            the item a :class:`Skipped` (counted like an unreadable media file).
        text_max_length: longest text in token ids (bos and eos included; longer texts are
            cut), None: no limit.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        *,
        vocab: LabelVocab | None = None,
        multi_label: bool = False,
        train: bool = True,
        duration: float = 2.0,
        num_frames: int = 8,
        image_size: int = 224,
        sample_rate: int = 16000,
        clips_per_video: int = 1,
        audio: bool = True,
        video: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: Sequence[float] = CROP_SCALE,
        ratio: Sequence[float] = CROP_RATIO,
        hflip_prob: float = HFLIP_PROB,
        seed: int = 0,
        backend: str = "pyav",
        seek_mode: str = "exact",
        fast_decode: bool = False,
        decode_time_limit: float | None = 60.0,
        extra_modalities: Mapping[str, Any] | None = None,
        text_max_length: int | None = None,
    ):
        entries = list(entries)
        if not entries:
            raise ValueError("entries is empty: the dataset needs at least one file")
        if not isinstance(clips_per_video, int) or clips_per_video < 1:
            raise ValueError(f"clips_per_video must be a positive int, got {clips_per_video!r}")
        if not (audio or video):
            raise ValueError("at least one of audio/video must be True")
        self.transform = VideoTransform(int(image_size), tuple(scale), tuple(ratio), float(hflip_prob), tuple(mean), tuple(std))
        self.entries = entries
        self.vocab = vocab if vocab is not None else LabelVocab.from_labels(e.labels for e in entries)
        self.multi_label = bool(multi_label)
        unknown: set[str] = set()
        for e in entries:
            if not e.labels:
                raise ValueError(f"entry {e.path!r} has no label")
            if not self.multi_label and len(e.labels) != 1:
                raise ValueError(f"entry {e.path!r} has {len(e.labels)} labels; use multi_label=True")
            unknown.update(lab for lab in e.labels if lab not in self.vocab)
        if unknown:
            raise self.vocab.unknown_labels_error(unknown, "the manifest")
        self.train = bool(train)
        self.duration = float(duration)
        self.num_frames = int(num_frames)
        self.image_size = self.transform.image_size
        self.sample_rate = int(sample_rate)
        self.clips_per_video = 1 if self.train else clips_per_video
        self.audio = audio
        self.video = video
        t = self.transform
        self.mean, self.std, self.scale, self.ratio, self.hflip_prob = t.mean, t.std, t.scale, t.ratio, t.hflip_prob
        self.seed = int(seed)
        self.backend = backend
        self.seek_mode = seek_mode
        self.fast_decode = fast_decode
        if decode_time_limit is not None and (
            isinstance(decode_time_limit, bool) or not isinstance(decode_time_limit, (int, float)) or not decode_time_limit > 0
        ):
            raise ValueError(f"decode_time_limit must be a positive number of seconds or None, got {decode_time_limit!r}")
        self.decode_time_limit = decode_time_limit
        self.extra_modalities = check_extra(extra_modalities)
        self.tokenizer = ByteTokenizer(text_max_length)
        self.text_max_length = text_max_length
        self.epoch = 0
        self.num_skipped = 0  # items skipped in this process (main process when num_workers=0)
        self._logged: set[str] = set()

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, *, root: str | os.PathLike | None = None, **kwargs: Any) -> "ClipDataset":
        """Dataset over a CSV/JSONL manifest or a folder-per-class tree (see
        :func:`read_manifest`; the manifest's columns of ``extra_modalities`` are read);
        ``kwargs`` as in the constructor."""
        return cls(read_manifest(path, root=root, modalities=kwargs.get("extra_modalities")), **kwargs)

    @classmethod
    def from_folder(cls, root: str | os.PathLike, **kwargs: Any) -> "ClipDataset":
        """Dataset over ``root/<class>/<file>`` (single-label); ``kwargs`` as in the
        constructor."""
        return cls(scan_folder(root), **kwargs)

    @property
    def num_classes(self) -> int:
        """Number of labels in the vocabulary."""
        return len(self.vocab)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random clip starts/crops are drawn (call before each epoch;
        with persistent workers, recreate the iterator so workers see it)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries) * self.clips_per_video

    def _label(self, entry: ManifestEntry) -> int | torch.Tensor:
        if self.multi_label:
            y = torch.zeros(len(self.vocab), dtype=torch.float32)
            for lab in entry.labels:
                y[self.vocab.index(lab)] = 1.0
            return y
        return self.vocab.index(entry.labels[0])

    def _choose_start(self, entry: ManifestEntry, info_start: float, info_end: float | None, clip: int, rng: np.random.Generator) -> float:
        lo = info_start if entry.start is None else max(info_start, entry.start)
        hi = info_end if entry.end is None else (entry.end if info_end is None else min(info_end, entry.end))
        if hi is None or hi < lo:
            hi = lo + self.duration
        slack = max(0.0, hi - lo - self.duration)
        if self.train:
            return lo + float(rng.uniform(0.0, slack)) if slack > 0 else lo
        if self.clips_per_video == 1:
            return lo + slack / 2.0
        return lo + slack * clip / (self.clips_per_video - 1)

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        if not isinstance(index, (int, np.integer)) or not (0 <= index < len(self)):
            raise IndexError(f"index {index!r} out of range for a dataset of {len(self)} items")
        index = int(index)
        entry = self.entries[index // self.clips_per_video]
        clip_no = index % self.clips_per_video
        rng = np.random.default_rng([self.seed, self.epoch, index])
        in_worker = get_worker_info() is not None
        threads = 1 if in_worker else 0
        try:
            with decode_time_limit(entry.path, self.decode_time_limit, exit_if_stuck=in_worker), MediaReader(
                entry.path, backend=self.backend, threads=threads, seek_mode=self.seek_mode, fast_decode=self.fast_decode
            ) as reader:
                info = reader.info
                start = self._choose_start(entry, info.start, info.end, clip_no, rng)
                clip = reader.read(
                    start=start,
                    duration=self.duration,
                    num_frames=self.num_frames,
                    image_size=self.image_size,
                    sample_rate=self.sample_rate,
                    audio=self.audio and info.has_audio,
                    video=self.video and info.has_video,
                    crop="random" if self.train else "center",
                    rng=rng,
                    scale=self.scale,
                    ratio=self.ratio,
                    hflip_prob=self.hflip_prob,
                )
            extra = extra_values(entry.extra, self.extra_modalities, self.tokenizer)
        except DecodeError as exc:
            self.num_skipped += 1
            if entry.path not in self._logged:
                self._logged.add(entry.path)
                logger.debug("skipping unreadable file: %s", exc)
            return Skipped(index, entry.path, exc.reason)
        except ValueError as exc:  # an extra modality's file (a .npy sequence) cannot be read
            self.num_skipped += 1
            if entry.path not in self._logged:
                self._logged.add(entry.path)
                logger.debug("skipping %s: %s", entry.path, exc)
            return Skipped(index, entry.path, str(exc))
        video = self.transform.normalize(clip.video) if clip.video is not None else None
        return {
            "audio": clip.audio,
            "video": video,
            "label": self._label(entry),
            "index": index,
            "path": entry.path,
            "start": clip.start,
            "padded": clip.padded,
            "audio_valid_samples": int(clip.audio_valid_samples) if clip.audio is not None else 0,
            **extra,
        }


def extra_values(values: Mapping[str, str], modalities: Mapping[str, str], tokenizer: ByteTokenizer) -> dict[str, Any]:
    """The item fields of the extra modalities of one entry: for each ``name -> kind`` of
    ``modalities``, ``<name>`` (``(L,)`` int64 ids of the text, or the ``(T, D)`` float32
    sequence loaded from its ``.npy`` path; None when ``values`` lacks it) and
    ``has_<name>``. Raises ValueError when a sequence file cannot be read."""
    out: dict[str, Any] = {}
    for name, kind in modalities.items():
        value = values.get(name)
        if value is None:
            out[name] = None
        elif kind == "text":
            out[name] = tokenizer.encode(value)
        else:
            out[name] = torch.from_numpy(load_sequence(value))
        out[f"has_{name}"] = out[name] is not None
    return out
