"""Random access to prepared shards: :class:`ShardDataset`, the reading side of ``zorro prepare``.

A prepared folder (see :mod:`zorro.data.shards.format`) holds ``dataset.json``, tar shards in
the WebDataset layout and one ``.index.json`` per shard giving each member's byte offset and
size. :class:`ShardDataset` reads one sample with one ``os.pread`` on the shard's file
descriptor (each process loads a shard's index when it first needs it and keeps a bounded
number of shard files open), decodes only the frames the clip uses, and returns the item dict of
:class:`~zorro.data.ClipDataset`::

    {"audio": (samples,) float32 or None, "video": (3, T, S, S) float32 normalised or None,
     "label": int (single-label) or (num_classes,) float32 multi-hot,
     "index": int, "path": str (source file), "start": float (s), "padded": bool,
     "audio_valid_samples": int (samples of real audio; the rest is zero padding)}

plus ``<name>`` and ``has_<name>`` for each extra modality asked for (``extra_modalities``):
text ids ``(L,)`` int64 from the ``<name>.txt`` member, a ``(T, D)`` float32 sequence from
``<name>.npy``; None and False for a sample without that member.

With ``video_dtype="uint8"`` the video is ``(3, T, S, S)`` uint8 RGB instead, left for the
trainer to normalise on its device (:func:`normalize_uint8_video`): a quarter of the bytes
to move between processes and no float pass in the loader.

Frames: training draws one random-resized crop box and flip per clip (the same for every
frame), evaluation takes the centred square of the short side; the box is cut from the
decoded uint8 frames and resized by ``torch.nn.functional.interpolate`` in uint8 (bilinear,
antialiased). Time: when a stored window is longer than ``duration``, training draws the
clip's offset uniformly and evaluation takes the centred clip; audio and frames use the same
offset. A clip that reaches past the stored audio is zero-padded and marked ``padded``.

Damage never stops a run: a missing shard or index file, a shard cut short, an unreadable
metadata, JPEG or audio member all make :meth:`ShardDataset.__getitem__` return a
:class:`~zorro.data.Skipped` record (the collate function drops it and counts it;
:class:`~zorro.data.SkipTracker` logs each damaged shard or sample once). A sample is never
returned with a zero tensor standing in for a member it could not read.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zorro.data.datasets import LabelVocab, Skipped
from zorro.data.modalities import check_extra, decode_sequence, member_suffix
from zorro.data.shards.format import AUDIO_SUFFIXES, DATASET_JSON, decode_audio, is_frame_suffix, read_dataset_json
from zorro.data.transforms import CROP_RATIO, CROP_SCALE, HFLIP_PROB, IMAGENET_MEAN, IMAGENET_STD, CropBox, VideoTransform
from zorro.tokenizer import ByteTokenizer

logger = logging.getLogger(__name__)

VIDEO_DTYPES = ("float32", "uint8")
JPEG_DECODERS = ("auto", "simplejpeg", "pillow")


class _Damaged(Exception):
    """A shard, index or member that cannot be read; ``where`` names it for the skip log."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def normalize_uint8_video(
    video: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """uint8 RGB video ``(..., 3, T, H, W)`` (0..255) -> float32 ``(x / 255 - mean) / std`` on
    the tensor's own device (use it on the training device for ``video_dtype="uint8"``)."""
    if not isinstance(video, torch.Tensor) or video.dtype != torch.uint8 or video.dim() < 4 or video.shape[-4] != 3:
        raise ValueError(f"expected a uint8 (..., 3, T, H, W) video tensor, got {getattr(video, 'dtype', type(video))} {tuple(getattr(video, 'shape', ()))}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError(f"mean and std need 3 values each (std > 0), got {tuple(mean)} and {tuple(std)}")
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=video.device).view(3, 1, 1, 1)
    offset = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32, device=video.device).view(3, 1, 1, 1)
    out = video.to(torch.float32)
    return out.mul_(scale).add_(offset)


def _jpeg_decoder(name: str) -> tuple[Callable[[bytes], tuple[int, int]], Callable[[bytes, np.ndarray], None]]:
    """``(size, decode_into)`` for a JPEG decoder: ``size(data) -> (H, W)`` reads the header;
    ``decode_into(data, out)`` decodes RGB into an ``(H, W, 3)`` uint8 array. Both raise on
    damaged data. Decoding into the clip's frame buffer instead of a new array per frame
    saves a copy and the page faults of a fresh allocation (~0.3 ms a 256x455 frame)."""
    if name not in JPEG_DECODERS:
        raise ValueError(f"jpeg_decoder must be one of {JPEG_DECODERS}, got {name!r}")
    if name in ("auto", "simplejpeg"):
        try:
            import simplejpeg
        except ImportError:
            if name == "simplejpeg":
                raise ImportError("jpeg_decoder='simplejpeg' needs the simplejpeg package (pip install simplejpeg)") from None
        else:
            def size(data: bytes) -> tuple[int, int]:
                h, w, _, _ = simplejpeg.decode_jpeg_header(data)
                return h, w

            def decode_into(data: bytes, out: np.ndarray) -> None:
                # accurate IDCT and chroma upsampling (fastupsample saves ~8 % but smears colour
                # edges by up to ~50 levels; fastdct alone saves nothing measurable); strict:
                # recoverable damage raises too
                simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, buffer=out)

            return size, decode_into
    from PIL import Image

    def size_pillow(data: bytes) -> tuple[int, int]:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise ValueError(f"not a JPEG ({im.format})")
            return im.size[1], im.size[0]

    def decode_pillow(data: bytes, out: np.ndarray) -> None:
        with Image.open(io.BytesIO(data)) as im:
            np.copyto(out, np.asarray(im.convert("RGB")))

    return size_pillow, decode_pillow


class _OpenShard:
    """One shard in one process: its index, held compactly, and its file descriptor.

    The index is kept as one ``(samples, members, 2)`` int64 array of (offset, size) over
    the union of the samples' member suffixes (offset -1 where a sample lacks one: a clip
    without video, a caption, ...), plus the keys: ~20 bytes a member instead of a dict per
    sample, so a worker can hold the indexes of millions of samples.
    The descriptor is opened on demand and may be closed again (:meth:`close`) to bound the
    number of open files; reopening checks the file is the same size.
    """

    def __init__(self, path: Path, index_path: Path, expected: int) -> None:
        self.path = path
        self.fd = -1
        self.size = -1
        try:
            with open(index_path, encoding="utf-8") as fh:
                index = json.load(fh)
        except FileNotFoundError:
            raise _Damaged(str(index_path), "shard index file is missing") from None
        except (OSError, ValueError) as exc:
            raise _Damaged(str(index_path), f"shard index is unreadable ({exc})") from None
        samples = index.get("samples") if isinstance(index, dict) else None
        if not isinstance(samples, list):
            raise _Damaged(str(index_path), "shard index has no 'samples' list")
        if len(samples) != expected:
            logger.warning("%s lists %d samples, dataset.json says %d; the missing ones are skipped", index_path, len(samples), expected)
        self.keys: list[str] = []
        self.suffixes: tuple[str, ...] = ()
        self.spans: np.ndarray | None = None  # (samples, members, 2) int64; offset -1: absent member
        self.entries: list[Any] = []  # the raw entries, when they are malformed
        try:
            self.keys = [str(e["key"]) for e in samples]
            first = tuple(samples[0]["members"]) if samples else ()
            if samples and all(tuple(e["members"]) == first for e in samples):
                self.suffixes = tuple(str(x) for x in first)
                self.spans = np.array([[e["members"][x] for x in first] for e in samples], dtype=np.int64).reshape(len(samples), len(first), 2)
            elif samples:
                self.suffixes = tuple(dict.fromkeys(str(x) for e in samples for x in e["members"]))
                column = {x: j for j, x in enumerate(self.suffixes)}
                self.spans = np.full((len(samples), len(self.suffixes), 2), -1, dtype=np.int64)
                for i, e in enumerate(samples):
                    for x, span in e["members"].items():
                        self.spans[i, column[str(x)]] = span
        except (KeyError, TypeError, ValueError, IndexError):
            self.keys = [str(e.get("key", i)) if isinstance(e, dict) else str(i) for i, e in enumerate(samples)]
            self.spans, self.entries = None, samples  # malformed entries fail when read

    def open(self) -> None:
        """Open the shard file if it is not open."""
        if self.fd >= 0:
            return
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise _Damaged(str(self.path), "shard file is missing") from None
        except OSError as exc:
            raise _Damaged(str(self.path), f"shard file cannot be opened ({exc})") from None
        self.size = os.fstat(self.fd).st_size

    def _spans(self, local: int) -> dict[str, tuple[int, int]]:
        if self.spans is not None:
            row = self.spans[local].tolist()
            return {x: (off, size) for x, (off, size) in zip(self.suffixes, row) if off >= 0}
        entry = self.entries[local]
        return {str(x): (int(v[0]), int(v[1])) for x, v in entry["members"].items()}

    def read_members(self, local: int) -> tuple[str, dict[str, memoryview]]:
        """The key and the members (suffix -> bytes) of sample ``local`` of this shard."""
        where = f"{self.path}#{local}"
        if local >= len(self.keys):
            raise _Damaged(where, "sample is missing from the shard index")
        key = self.keys[local]
        where = f"{self.path}#{key}"
        try:
            spans = self._spans(local)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise _Damaged(where, f"malformed index entry ({exc!r})") from None
        if not spans:
            raise _Damaged(where, "sample has no members")
        self.open()
        lo = min(off for off, _ in spans.values())
        hi = max(off + size for off, size in spans.values())
        if lo < 0 or hi > self.size:
            raise _Damaged(where, f"shard is truncated ({self.size} bytes, the sample needs bytes {lo}..{hi})")
        if hi - lo <= 2 * sum(size for _, size in spans.values()) + 4096:
            blob = os.pread(self.fd, hi - lo, lo)  # one read: a sample's members are adjacent in the tar
            if len(blob) != hi - lo:
                raise _Damaged(where, "shard is truncated (short read)")
            view = memoryview(blob)
            return key, {x: view[off - lo : off - lo + size] for x, (off, size) in spans.items()}
        members = {}
        for x, (off, size) in spans.items():
            data = os.pread(self.fd, size, off)
            if len(data) != size:
                raise _Damaged(where, "shard is truncated (short read)")
            members[x] = memoryview(data)
        return key, members

    def close(self) -> None:
        """Close the file descriptor (the index stays; :meth:`open` reopens)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _stored_valid_samples(meta: dict[str, Any], wave: np.ndarray) -> int:
    """Samples of real audio at the start of a stored window: ``audio_valid_samples`` from the
    metadata; for shards prepared before it was recorded, the whole window when it is not
    ``padded``, else the window up to its trailing run of exact zeros (the padding)."""
    valid = meta.get("audio_valid_samples")
    if isinstance(valid, int) and not isinstance(valid, bool):
        return min(max(valid, 0), wave.shape[0])
    if not meta.get("padded", False):
        return wave.shape[0]
    nonzero = np.flatnonzero(wave)
    return int(nonzero[-1]) + 1 if nonzero.size else 0


class ShardDataset(Dataset):
    """Clips read from a prepared shard folder (``zorro prepare``); items as :class:`~zorro.data.ClipDataset`.

    Args:
        root: the folder holding ``dataset.json`` (or the path of ``dataset.json``).
        vocab: label vocabulary to map names to ids; default the folder's own ``labels``.
            Every label of the folder must be in it (an eval folder uses the training vocab).
        train: random clip offset, random-resized crop and flip; otherwise the centred clip
            and the centre crop.
        duration: clip length (s); at most the stored window (a shorter stored window is
            padded). None: the stored window.
        num_frames: frames per clip (chosen among the stored frames nearest the clip's frame
            times); None: as stored.
        image_size: square crop side ``S`` (pixels).
        sample_rate: audio rate (Hz); must equal the stored rate (no resampling). None: stored.
        audio, video: return these modalities (a sample lacking one still yields the other).
        mean, std: per-channel normalisation of float32 video (default ImageNet).
        scale, ratio, hflip_prob: random-resized-crop parameters (training only); these,
            ``image_size`` and ``mean``/``std`` form the dataset's
            :class:`~zorro.data.transforms.VideoTransform` (``.transform``).
        seed: base seed; item randomness depends only on ``(seed, epoch, index)``.
        video_dtype: ``"float32"`` (normalised, as ClipDataset) or ``"uint8"`` (0..255 RGB;
            normalise on the device with :func:`normalize_uint8_video`).
        jpeg_decoder: ``"auto"`` (simplejpeg when installed, else Pillow), ``"simplejpeg"``,
            ``"pillow"``.
        max_open_files: shard files one process keeps open at once (least recently used
            ones are closed; their indexes stay loaded).
        extra_modalities: the extra modalities to return, ``name -> kind`` (``"text"``,
            ``"sequence"``; see :func:`zorro.data.modalities.check_extra`), read from the
            samples' ``<name>.txt`` / ``<name>.npy`` members (``zorro prepare --modality``);
            a sample without the member gives None and ``has_<name>`` False.
        text_max_length: longest text in token ids (bos and eos included; longer texts are
            cut), None: no limit.

    Attributes:
        info: the contents of ``dataset.json``.
        shard_sizes: samples per shard, in the global order (for :class:`ShardSampler`).
        num_skipped: samples skipped in this process; ``num_read``: samples read in this
            process (main process when ``num_workers=0``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        vocab: LabelVocab | None = None,
        train: bool = True,
        duration: float | None = None,
        num_frames: int | None = None,
        image_size: int = 224,
        sample_rate: int | None = None,
        audio: bool = True,
        video: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: Sequence[float] = CROP_SCALE,
        ratio: Sequence[float] = CROP_RATIO,
        hflip_prob: float = HFLIP_PROB,
        seed: int = 0,
        video_dtype: str = "float32",
        jpeg_decoder: str = "auto",
        max_open_files: int = 128,
        extra_modalities: Any = None,
        text_max_length: int | None = None,
    ) -> None:
        info = read_dataset_json(root)  # one reader of dataset.json: versions, format and dry runs checked there
        path = Path(root)
        meta_path = path if path.name == DATASET_JSON and not path.is_dir() else path / DATASET_JSON
        if video_dtype not in VIDEO_DTYPES:
            raise ValueError(f"video_dtype must be one of {VIDEO_DTYPES}, got {video_dtype!r}")
        if not (audio or video):
            raise ValueError("at least one of audio/video must be True")
        if isinstance(max_open_files, bool) or not isinstance(max_open_files, (int, np.integer)) or max_open_files < 1:
            raise ValueError(f"max_open_files must be a positive int, got {max_open_files!r}")
        self.transform = VideoTransform(image_size, tuple(scale), tuple(ratio), hflip_prob, tuple(mean), tuple(std))
        if duration is not None and not duration > 0:
            raise ValueError(f"duration must be > 0 seconds or None, got {duration!r}")
        if num_frames is not None and (not isinstance(num_frames, (int, np.integer)) or num_frames < 1):
            raise ValueError(f"num_frames must be a positive int or None, got {num_frames!r}")
        self.root = meta_path.parent
        self.info = info
        self.multi_label = bool(info.get("multi_label", False))
        own = list(info["labels"])
        self.vocab = vocab if vocab is not None else LabelVocab(own)
        missing = [n for n in own if n not in self.vocab]
        if missing:
            raise self.vocab.unknown_labels_error(missing, str(meta_path))
        self._label_map = np.array([self.vocab.index(n) for n in own], dtype=np.int64)
        self.shards: list[dict[str, Any]] = []
        for i, s in enumerate(info["shards"]):
            try:
                self.shards.append({"name": str(s["name"]), "index": str(s["index"]), "num_samples": int(s["num_samples"])})
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{meta_path}: shard entry {i} needs name, index and num_samples, got {s!r}") from None
        self.shard_sizes = [s["num_samples"] for s in self.shards]
        self._offsets = np.concatenate([[0], np.cumsum(self.shard_sizes)]).astype(np.int64).tolist()
        if self._offsets[-1] < 1:
            raise ValueError(f"{meta_path} lists no samples")
        stored_rate = (info.get("settings") or {}).get("sample_rate")
        if sample_rate is not None and stored_rate is not None and int(stored_rate) != int(sample_rate):
            raise ValueError(f"the shards hold audio at {stored_rate} Hz, the dataset was asked for {sample_rate} Hz (shards are not resampled: prepare them at this rate)")
        self.train = bool(train)
        self.duration = None if duration is None else float(duration)
        self.num_frames = None if num_frames is None else int(num_frames)
        self.image_size = self.transform.image_size
        self.sample_rate = None if sample_rate is None else int(sample_rate)
        self.audio = bool(audio)
        self.video = bool(video)
        t = self.transform
        self.mean, self.std, self.scale, self.ratio, self.hflip_prob = t.mean, t.std, t.scale, t.ratio, t.hflip_prob
        self.seed = int(seed)
        self.video_dtype = video_dtype
        self.jpeg_decoder = jpeg_decoder
        _jpeg_decoder(jpeg_decoder)  # unknown names / missing packages fail here
        self._norm_scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(3, 1, 1, 1)
        self._norm_offset = torch.tensor([-m / s for m, s in zip(self.mean, self.std)]).view(3, 1, 1, 1)
        self.extra_modalities = check_extra(extra_modalities)
        self.tokenizer = ByteTokenizer(text_max_length)
        self.text_max_length = text_max_length
        stored = dict((info.get("settings") or {}).get("modalities") or {})
        for name, kind in self.extra_modalities.items():
            if name in stored and stored[name] != kind:
                raise ValueError(f"{meta_path}: {name!r} is stored as a {stored[name]} modality, the dataset was asked for {kind}")
            if name not in stored:
                logger.warning("%s was prepared without the %r modality (zorro prepare --modality %s=%s): no sample has it", meta_path,
                               name, name, kind)
        self.epoch = 0
        self.num_skipped = 0
        self.num_read = 0
        self._logged: set[str] = set()
        self._open: dict[int, _OpenShard | _Damaged] = {}
        self._fds: OrderedDict[int, None] = OrderedDict()
        self.max_open_files = int(max_open_files)
        self._pid = -1
        self._decode_jpeg = None

    # ----------------------------------------------------------------- sizes and labels

    @property
    def num_classes(self) -> int:
        """Number of labels in the vocabulary."""
        return len(self.vocab)

    def __len__(self) -> int:
        return self._offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random offsets and crops are drawn (call before each epoch)."""
        self.epoch = int(epoch)

    def label_ids(self) -> "LabelIds":
        """The label ids of every sample, in this dataset's vocabulary, in sample order,
        without reading samples: from the shard indexes (format 2). A folder whose indexes
        lack them (format 1) has every sample's JSON read instead -- one read per sample,
        logged as the slower path. Returns a :class:`~zorro.data.sample_meta.LabelIds`.

        Raises:
            ValueError: an index or sample that does not match ``dataset.json``.
        """
        from zorro.data.sample_meta import LabelIds, index_label_ids, sample_metadata  # noqa: PLC0415

        ids = index_label_ids(self.root, self.info)
        if ids is None:
            logger.info("%s: the shard indexes carry no label ids (a folder written before format 2): reading the labels of "
                        "all %d samples from the samples themselves (slower; prepare the folder again to start from the indexes)",
                        self.root, len(self))
            samples, _ = sample_metadata(self.root)
            rows = []
            for i, smp in enumerate(samples):
                if "label_ids" not in smp:
                    raise ValueError(f"{self.root}: sample {i} has no label_ids")
                rows.append([int(c) for c in smp["label_ids"]])
            ids = LabelIds.from_lists(rows)
        if len(ids) != len(self):
            raise ValueError(f"{self.root}: {len(ids)} label rows for {len(self)} samples")
        if ids.values.size and (ids.values.min() < 0 or ids.values.max() >= len(self._label_map)):
            raise ValueError(f"{self.root}: label ids outside the folder's {len(self._label_map)} labels")
        return ids.map(self._label_map)

    def locate(self, index: int) -> tuple[int, int]:
        """``(shard number, position in that shard)`` of global sample ``index``."""
        shard = bisect.bisect_right(self._offsets, index) - 1
        return shard, index - self._offsets[shard]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"], state["_pid"], state["_decode_jpeg"], state["_fds"] = {}, -1, None, OrderedDict()  # each process opens its own
        return state

    def close(self) -> None:
        """Close the shard files this process opened (they reopen on the next read)."""
        for shard in self._open.values():
            if isinstance(shard, _OpenShard):
                shard.close()
        self._open, self._fds = {}, OrderedDict()

    def _shard(self, number: int) -> _OpenShard:
        if self._pid != os.getpid():  # a forked worker: open its own descriptors
            self._open, self._pid, self._decode_jpeg, self._fds = {}, os.getpid(), None, OrderedDict()
        shard = self._open.get(number)
        if shard is None:
            s = self.shards[number]
            try:
                shard = _OpenShard(self.root / s["name"], self.root / s["index"], s["num_samples"])
                shard.open()
            except _Damaged as exc:
                shard = exc  # remembered: a missing shard is looked for once per process
            self._open[number] = shard
        if isinstance(shard, _Damaged):
            raise shard
        self._fds[number] = None  # most recently used last; the oldest descriptors are closed
        self._fds.move_to_end(number)
        while len(self._fds) > self.max_open_files:
            old, _ = self._fds.popitem(last=False)
            old_shard = self._open.get(old)
            if isinstance(old_shard, _OpenShard):
                old_shard.close()
        return shard

    def _label(self, meta: dict[str, Any]) -> int | torch.Tensor:
        ids = meta.get("label_ids")
        if not isinstance(ids, list) or not ids:
            raise ValueError("metadata has no label_ids")
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self._label_map) for i in ids):
            raise ValueError(f"label_ids {ids} are not ids into the folder's {len(self._label_map)} labels")
        mapped = [int(self._label_map[i]) for i in ids]
        if self.multi_label:
            y = torch.zeros(len(self.vocab), dtype=torch.float32)
            y[mapped] = 1.0
            return y
        if len(mapped) != 1:
            raise ValueError(f"sample has {len(mapped)} labels in a single-label dataset")
        return mapped[0]

    # ----------------------------------------------------------------- reading

    def _jpeg_functions(self) -> tuple[Callable[[bytes], tuple[int, int]], Callable[[bytes, np.ndarray], None]]:
        """This process's JPEG decoder: ``(size, decode_into)`` (see :func:`_jpeg_decoder`)."""
        return _jpeg_decoder(self.jpeg_decoder)

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        if not isinstance(index, (int, np.integer)) or not (0 <= index < len(self)):
            raise IndexError(f"index {index!r} out of range for a dataset of {len(self)} samples")
        index = int(index)
        number, local = self.locate(index)
        self.num_read += 1
        try:
            shard = self._shard(number)
            key, members = shard.read_members(local)
            return self._item(index, f"{shard.path}#{key}", key, members)
        except _Damaged as exc:
            return self._skip(index, exc.where, exc.reason)

    def _skip(self, index: int, where: str, reason: str) -> Skipped:
        self.num_skipped += 1
        if where not in self._logged:
            self._logged.add(where)
            logger.debug("skipping damaged shard data %s: %s", where, reason)
        return Skipped(index, where, reason)

    def _item(self, index: int, where: str, key: str, members: dict[str, memoryview]) -> dict[str, Any]:
        if "json" not in members:
            raise _Damaged(where, "sample has no metadata (.json) member")
        try:
            meta = json.loads(bytes(members["json"]))
            if not isinstance(meta, dict):
                raise ValueError("not an object")
            label = self._label(meta)
            start = float(meta.get("start") or 0.0)
            end = meta.get("end")
            stored_len = None if end is None else max(0.0, float(end) - start)
        except (ValueError, TypeError, IndexError) as exc:
            raise _Damaged(where, f"unreadable metadata ({exc})") from None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        audio_suffix = next((s for s in AUDIO_SUFFIXES if s in members), None)
        frame_suffixes = sorted(s for s in members if is_frame_suffix(s))
        want_audio = self.audio and audio_suffix is not None
        want_video = self.video and bool(frame_suffixes)
        if not (want_audio or want_video):
            raise _Damaged(where, "sample has none of the requested modalities")
        rate = int(meta.get("sample_rate") or self.sample_rate or 16000)
        if self.sample_rate is not None and want_audio and rate != self.sample_rate:
            raise _Damaged(where, f"audio stored at {rate} Hz, {self.sample_rate} Hz requested")
        if stored_len is None:
            stored_len = self.duration or 0.0
        clip_len = self.duration if self.duration is not None else stored_len
        slack = max(0.0, stored_len - clip_len)
        offset = float(rng.uniform(0.0, slack)) if (self.train and slack > 0) else slack / 2.0
        padded = bool(meta.get("padded", False))
        audio = None
        valid = 0
        if want_audio:
            try:
                wave = np.asarray(decode_audio(bytes(members[audio_suffix]), audio_suffix), dtype=np.float32)
            except Exception as exc:  # any decoder failure is damage of this member
                raise _Damaged(where, f"unreadable audio member {key}.{audio_suffix} ({type(exc).__name__}: {exc})") from None
            if wave.ndim != 1:
                raise _Damaged(where, f"audio member {key}.{audio_suffix} is not mono (shape {wave.shape})")
            need = int(round(clip_len * rate)) if clip_len > 0 else wave.shape[0]
            first = int(round(offset * rate))
            stored_valid = _stored_valid_samples(meta, wave)
            valid = max(0, min(need, stored_valid - first))
            piece = wave[first : first + need]
            if piece.shape[0] < need:
                padded = True
                piece = np.concatenate([piece, np.zeros(need - piece.shape[0], dtype=np.float32)])
            audio = torch.from_numpy(np.ascontiguousarray(piece))
        video = None
        if want_video:
            video = self._frames(where, key, members, frame_suffixes, offset, clip_len, stored_len, rng)
        extra: dict[str, Any] = {}
        for name, kind in self.extra_modalities.items():
            suffix = member_suffix(name, kind)
            value = None
            if suffix in members:
                try:
                    if kind == "text":
                        value = self.tokenizer.encode(bytes(members[suffix]).decode("utf-8"))
                    else:
                        value = torch.from_numpy(decode_sequence(bytes(members[suffix])))
                except ValueError as exc:  # UnicodeDecodeError included
                    raise _Damaged(where, f"unreadable {kind} member {key}.{suffix} ({exc})") from None
            extra[name] = value
            extra[f"has_{name}"] = value is not None
        return {
            "audio": audio,
            "video": video,
            "label": label,
            "index": index,
            "path": str(meta.get("path", where)),
            "start": start + offset,
            "padded": padded,
            "audio_valid_samples": valid if audio is not None else 0,
            **extra,
        }

    def _frames(self, where: str, key: str, members: dict[str, memoryview], suffixes: list[str], offset: float,
                clip_len: float, stored_len: float, rng: np.random.Generator) -> torch.Tensor:
        stored = len(suffixes)
        n = self.num_frames or stored
        if stored_len > 0 and clip_len > 0:
            times = offset + (np.arange(n) + 0.5) * (clip_len / n)  # the clip's frame times, s after the window start
            chosen = np.clip(np.floor(times * stored / stored_len), 0, stored - 1).astype(np.int64)
        else:
            chosen = np.minimum(np.arange(n) * stored // n, stored - 1)
        if self._decode_jpeg is None:
            self._decode_jpeg = self._jpeg_functions()
        size, decode_into = self._decode_jpeg
        frames: np.ndarray | None = None
        first_use: dict[int, int] = {}
        for i, j in enumerate(chosen.tolist()):
            if j in first_use:  # a stored frame used twice (more clip frames than stored)
                frames[i] = frames[first_use[j]]
                continue
            data = members[suffixes[j]]
            try:
                hw = size(data)
                if frames is None:
                    frames = np.empty((n, hw[0], hw[1], 3), dtype=np.uint8)
                elif hw != frames.shape[1:3]:
                    raise ValueError(f"frame is {hw[1]}x{hw[0]}, the sample's first frame {frames.shape[2]}x{frames.shape[1]}")
                decode_into(data, frames[i])
            except Exception as exc:  # any decoder failure is damage of this member
                raise _Damaged(where, f"unreadable JPEG member {key}.{suffixes[j]} ({type(exc).__name__}: {exc})") from None
            first_use[j] = i
        h, w = frames.shape[1:3]
        return self._crop_resize(frames, self.transform.crop_box(w, h, rng, train=self.train))

    def _crop_resize(self, frames: np.ndarray, box: CropBox) -> torch.Tensor:
        """Cut ``box`` (rounded to whole pixels) from ``(T, H, W, 3)`` uint8 frames, resize it
        to ``S`` x ``S`` in uint8 (bilinear, antialiased), flip if the box says so; returns
        ``(3, T, S, S)`` uint8, or float32 normalised (``video_dtype``)."""
        _, h, w, _ = frames.shape
        x0 = min(max(int(round(box.x)), 0), w - 1)
        y0 = min(max(int(round(box.y)), 0), h - 1)
        x1 = min(max(int(round(box.x + box.w)), x0 + 1), w)
        y1 = min(max(int(round(box.y + box.h)), y0 + 1), h)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)[:, :, y0:y1, x0:x1]  # (T, 3, h, w), channels-last memory
        s = self.image_size
        if (y1 - y0, x1 - x0) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        if self.video_dtype == "uint8":
            x = x.permute(1, 0, 2, 3)  # (3, T, S, S)
            return x.flip(-1) if box.flip else x.contiguous()  # flip copies into (3, T, S, S) order
        if box.flip:
            x = x.flip(-1)
        x = x.permute(1, 0, 2, 3)  # (3, T, S, S)
        out = torch.empty(x.shape, dtype=torch.float32)
        out.copy_(x)
        return out.mul_(self._norm_scale).add_(self._norm_offset)
