"""The prepared-shard format (version 2): names, layouts and the codecs of the members.

An output folder ``OUT`` of ``zorro prepare`` (:func:`zorro.data.prepare.prepare_shards`) holds:

* ``OUT/dataset.json`` (written last, atomically; small: it holds counts, never per-clip
  lists): ``format`` (``"zorro-shards"``), ``format_version`` (2), ``num_samples``,
  ``labels`` (vocabulary in class-id order), ``multi_label``, ``shards``
  (``[{"name", "index", "num_samples", "bytes"}]``, in the global sample order), ``counts``
  (``{"sources", "written", "unreadable", "missing", "samples", "skipped_windows"}``:
  ``sources == written + unreadable + missing``; ``written`` counts source files,
  ``samples`` counts stored windows; the dataset commands add ``rows`` (annotation rows
  read), ``annotated`` (rows kept), ``dropped_rows`` (unusable rows left out),
  ``filtered_rows`` (rows of other splits, folds or classes) and ``found`` (annotated clips
  with a media file)), ``settings`` (every decode/window/storage setting: the fields of
  :class:`zorro.data.prepare.PrepareSettings` with ``store_size`` resolved), ``versions``
  (zorro, torch, av, ffmpeg, numpy, pillow, python), ``fingerprint`` (sha256 of settings and
  sources, used to resume), ``extra`` (the caller's ``extra_info``, ``{}`` otherwise),
  ``lists`` (the file name of each per-item list below), ``dry_run`` (true for the
  accounting written by ``zorro prepare --dry-run``: no shards) and, for a folder prepared
  in parts, ``parts`` (``{"num_parts", ...}``).
* Beside it, one JSON object a line (:data:`LIST_FILES`; a file may be absent when its count
  is 0): ``missing.jsonl`` (annotated items without a media file, as the caller gave them),
  ``unreadable.jsonl`` (``{"path", "reason", "source"}``, ``source`` = index in the source
  list), ``skipped_windows.jsonl`` (``{"path", "window", "start", "reason"}``: windows of
  written sources that decoded to nothing) and ``dropped_rows.jsonl`` (annotation rows left
  out, ``{"source", "line", "reason", "detail"}``). Read them with :func:`iter_list`.
* ``OUT/shard-000000.tar``, ``OUT/shard-000001.tar``, ... (:func:`shard_name`; a folder
  prepared in parts has ``shard-p0000-000000.tar``, ``shard-p0001-000000.tar``, ...: the
  part, then the shard within it): plain uncompressed POSIX (ustar) tar files in the
  WebDataset layout, and beside each one ``OUT/shard-000000.index.json``
  (:func:`index_name`)::

      {"shard": "shard-000000.tar", "format_version": 2, "bytes": <tar size>,
       "num_samples": n, "source_start": i0, "source_end": i1, "first_sample": k0,
       "part": null, "num_parts": null,
       "unreadable": [{"source": i, "path": p, "reason": r}, ...], "skipped_windows": [...],
       "fingerprint": "<sha256 of the settings and sources>", "settings": {...},
       "label_ids": [[0, 5], [3], ...],
       "sample_meta": {"fold": [1, 1, 2, ...]},
       "samples": [{"key": "s000000123", "members": {"json": [offset, size],
                                                     "wav": [offset, size],
                                                     "000.jpg": [offset, size], ...}}, ...]}

  ``offset`` is the byte position of the member's *data* in the tar (after its 512-byte
  header), ``size`` its length in bytes, so ``os.pread(fd, size, offset)`` returns the member
  (:func:`read_members`). A sample may have any further members (another suffix under the
  same key); readers take the ones they know. ``label_ids`` (one list per sample, in
  ``samples`` order) and ``sample_meta`` (a few annotation fields, one list per field, e.g.
  the cross-validation fold) come before ``samples``, so a reader can take them from the
  head of the file without parsing the member table (:func:`read_index_head`): samplers
  start from the indexes without reading any sample. Version-1 indexes lack both.
  A shard holds the samples of the sources ``[source_start, source_end)`` of the source list
  (of its part's range, for a part); ``unreadable`` lists those of them that could not be
  decoded. The global sample order is the shards in ``dataset.json`` order, then index
  order. In a folder prepared in one run, sample ``k`` (0-based, global) has key
  :func:`sample_key` ``(k)``; a part's samples have keys :func:`sample_key` ``(k, part)``
  (``p0003s000000012``: the ``k``-th sample of part 3), and its indexes say ``part`` and
  ``num_parts`` (null in a folder prepared in one run; ``first_sample`` counts within the part).

One sample is the tar members sharing a key (``s`` + 9 digits, after ``p`` + 4 digits in a
part; no dots):

* ``KEY.json`` (UTF-8 JSON): ``path`` (source file), ``start`` / ``end`` (s, the stored window
  on the source's timeline), ``labels`` (names), ``label_ids`` (ints into ``labels`` of
  ``dataset.json``), ``has_audio``, ``has_video``, ``padded`` (part of a present modality is
  padding: the window ran past the file's data), ``sample_rate`` (Hz, the stored audio rate,
  also given without audio), ``fps`` (stored frames per second, ``num_frames`` setting /
  stored duration, also given without video), ``num_frames`` (jpg members of this sample,
  0 without video), ``width`` / ``height`` (stored frame size, 0 without video), ``source``
  (index of the source in the source list), ``window`` (index of the window within that
  source), ``meta`` (annotation fields such as ytid, fold; ``{}`` if none).
* ``KEY.wav`` (16-bit PCM mono RIFF/WAVE) or ``KEY.flac`` (FLAC, 16-bit mono): the window's
  audio, ``round((end - start) * sample_rate)`` samples. Absent without audio. Read it with
  :func:`decode_audio`. Which of the two is written is the ``audio_format`` setting (default
  ``"wav"``: see ``docs/shards.md`` for the measurement behind the choice).
* ``KEY.000.jpg``, ``KEY.001.jpg``, ...: ``num_frames`` baseline RGB JPEGs, frame ``i`` shows
  time ``start + (i + 0.5) * (end - start) / num_frames``; the short side is the ``store_size``
  setting, the aspect ratio is the source's. Absent without video.
* ``KEY.<name>.txt`` / ``KEY.<name>.npy``: the extra modalities of the ``modalities`` setting
  (recorded in ``dataset.json``'s ``settings`` only when set): a ``text`` modality's string
  (UTF-8), a ``sequence`` modality's ``(T, D)`` float32 array in NumPy's ``.npy`` format (see
  :mod:`zorro.data.modalities`). Absent when the source has no value for it.

The WebDataset convention splits a member name at the first dot, so ``webdataset`` sees the
suffixes ``json``, ``wav``/``flac`` and ``000.jpg``, ... -- the same strings as the
``members`` keys of the index.

Version 1 (still read): ``dataset.json`` held the lists ``unreadable``, ``missing`` and
``skipped_windows`` itself (and the dataset commands' dropped rows under
``extra.dropped_rows``), and indexes had no ``label_ids`` / ``sample_meta``.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import wave
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from zorro.fileio import fsync_dir, new_temp_path, write_bytes_atomic

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "DATASET_JSON",
    "LIST_FILES",
    "AUDIO_SUFFIXES",
    "MAX_PARTS",
    "shard_name",
    "index_name",
    "parse_shard_file",
    "sample_key",
    "frame_suffix",
    "is_frame_suffix",
    "encode_audio",
    "decode_audio",
    "encode_jpeg",
    "decode_jpeg",
    "read_index",
    "read_index_head",
    "read_members",
    "read_dataset_json",
    "iter_list",
    "write_json_atomic",
    "JsonlWriter",
]

FORMAT_NAME = "zorro-shards"
FORMAT_VERSION = 2
#: the format versions this zorro reads
READABLE_VERSIONS = (1, 2)
#: name of the dataset description inside an output folder
DATASET_JSON = "dataset.json"
#: the per-item lists beside ``dataset.json`` (version 2), by the name of their count
LIST_FILES = {
    "missing": "missing.jsonl",
    "unreadable": "unreadable.jsonl",
    "skipped_windows": "skipped_windows.jsonl",
    "dropped_rows": "dropped_rows.jsonl",
}
#: member suffixes an audio waveform can have
AUDIO_SUFFIXES = ("wav", "flac")
#: largest number of frames one sample can store (3-digit frame suffixes)
MAX_FRAMES = 1000
#: most parts a folder can be prepared in (4-digit part numbers)
MAX_PARTS = 10000
_KEY_DIGITS = 9
_SHARD_FILE = re.compile(r"^shard-(?:p(\d{4})-)?(\d{6})\.(tar|index\.json)(\.tmp)?$")


def _check_part(part: int | None) -> None:
    if part is not None and (isinstance(part, bool) or not isinstance(part, (int, np.integer)) or not (0 <= part < MAX_PARTS)):
        raise ValueError(f"part must be an int in [0, {MAX_PARTS}) or None, got {part!r}")


def shard_name(number: int, part: int | None = None) -> str:
    """File name of shard ``number`` (0-based): ``shard-000000.tar``; of part ``part``'s shard
    ``number``: ``shard-p0003-000000.tar``."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
        raise ValueError(f"shard number must be an int >= 0, got {number!r}")
    _check_part(part)
    if part is None:
        return f"shard-{int(number):06d}.tar"
    return f"shard-p{int(part):04d}-{int(number):06d}.tar"


def index_name(number: int, part: int | None = None) -> str:
    """File name of the index of shard ``number`` (of ``part``): ``shard-000000.index.json``."""
    return shard_name(number, part)[: -len(".tar")] + ".index.json"


def parse_shard_file(name: str) -> tuple[int | None, int, str, bool] | None:
    """``(part or None, shard number, "tar" or "index.json", is a .tmp file)`` for a file
    named like a shard or its index (final or temporary), else None."""
    m = _SHARD_FILE.match(name)
    if m is None:
        return None
    return (None if m.group(1) is None else int(m.group(1))), int(m.group(2)), m.group(3), m.group(4) is not None


def sample_key(number: int, part: int | None = None) -> str:
    """Key of sample ``number`` (0-based): ``s000000123`` (global number, a folder prepared in
    one run) or ``p0003s000000123`` (the number within part 3). No dots."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
        raise ValueError(f"sample number must be an int >= 0, got {number!r}")
    if number >= 10**_KEY_DIGITS:
        raise ValueError(f"sample number {number} does not fit the {_KEY_DIGITS}-digit key")
    _check_part(part)
    key = f"s{int(number):0{_KEY_DIGITS}d}"
    return key if part is None else f"p{int(part):04d}{key}"


def frame_suffix(i: int) -> str:
    """Member suffix of frame ``i`` of a sample: ``000.jpg`` ... ``999.jpg``."""
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not (0 <= i < MAX_FRAMES):
        raise ValueError(f"frame number must be an int in [0, {MAX_FRAMES}), got {i!r}")
    return f"{int(i):03d}.jpg"


def is_frame_suffix(suffix: str) -> bool:
    """Whether ``suffix`` (as in an index's ``members``) names a frame (``NNN.jpg``)."""
    return len(suffix) == 7 and suffix.endswith(".jpg") and suffix[:3].isdigit()


# -- audio -------------------------------------------------------------------------------
def _to_pcm16(wave_f32: np.ndarray) -> np.ndarray:
    x = np.asarray(wave_f32)
    if x.ndim != 1:
        raise ValueError(f"audio must be a 1-D (samples,) waveform, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"audio must be a float array in [-1, 1], got dtype {x.dtype}")
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError("audio holds NaN or inf samples")
    # round-to-nearest onto the 16-bit grid; values beyond [-1, 1] clip
    return np.clip(np.rint(x.astype(np.float64) * 32767.0), -32768, 32767).astype("<i2")


def encode_audio(wave_f32: np.ndarray, sample_rate: int, suffix: str = "wav") -> bytes:
    """Encode a mono waveform as a shard audio member.

    Args:
        wave_f32: ``(samples,)`` float waveform in [-1, 1] (values outside clip).
        sample_rate: Hz.
        suffix: ``"wav"`` (16-bit PCM RIFF/WAVE) or ``"flac"`` (lossless FLAC of the same
            16-bit samples).

    Returns:
        The member's bytes; :func:`decode_audio` returns the samples quantised to 16 bits
        (``round(x * 32767) / 32767``).
    """
    if suffix not in AUDIO_SUFFIXES:
        raise ValueError(f"audio suffix must be one of {AUDIO_SUFFIXES}, got {suffix!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    pcm = _to_pcm16(wave_f32)
    if suffix == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())
        return buf.getvalue()
    return _encode_flac(pcm, int(sample_rate))


def _encode_flac(pcm: np.ndarray, sample_rate: int) -> bytes:
    import av  # noqa: PLC0415  (only the flac path needs FFmpeg)

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream("flac", rate=sample_rate, layout="mono")
        stream.codec_context.format = "s16"
        # bit-reproducible output: no encoder/muxer version strings or MD5 surprises
        out.metadata.clear()
        step = 4096
        for off in range(0, max(pcm.size, 1), step):
            chunk = pcm[off : off + step]
            if chunk.size == 0:
                break
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = off
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode_audio(data: bytes, suffix: str) -> np.ndarray:
    """Decode a shard audio member.

    Args:
        data: the member's bytes (``KEY.wav`` or ``KEY.flac``).
        suffix: ``"wav"`` or ``"flac"`` (the member suffix).

    Returns:
        ``(samples,)`` float32 mono waveform in [-1, 1] (16-bit samples / 32767).

    Raises:
        ValueError: ``data`` is not a valid member of that kind (damaged or truncated).
    """
    if suffix not in AUDIO_SUFFIXES:
        raise ValueError(f"audio suffix must be one of {AUDIO_SUFFIXES}, got {suffix!r}")
    data = bytes(data)
    if suffix == "wav":
        pcm = _parse_wav(data)
    else:
        pcm = _decode_flac(data)
    return pcm.astype(np.float32) * np.float32(1.0 / 32767.0)


def _parse_wav(data: bytes) -> np.ndarray:
    # a direct RIFF parse: ~10x faster than the wave module for short members
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("audio member is not a RIFF/WAVE file")
    pos = 12
    fmt_ok = False
    while pos + 8 <= len(data):
        cid = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + 16 > len(data):
                raise ValueError("audio member has a truncated 'fmt ' chunk")
            tag, channels, _rate, _brate, _align, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag != 1 or channels != 1 or bits != 16:
                raise ValueError(f"audio member must be 16-bit PCM mono, got format {tag}, {channels} channels, {bits} bits")
            fmt_ok = True
        elif cid == b"data":
            if not fmt_ok:
                raise ValueError("audio member has 'data' before 'fmt '")
            if body + size > len(data) or size % 2:
                raise ValueError(f"audio member is truncated: 'data' says {size} bytes, {len(data) - body} present")
            return np.frombuffer(data, dtype="<i2", count=size // 2, offset=body)
        pos = body + size + (size & 1)
    raise ValueError("audio member has no 'data' chunk")


def _decode_flac(data: bytes) -> np.ndarray:
    import av  # noqa: PLC0415

    parts = []
    try:
        with av.open(io.BytesIO(data), mode="r", format="flac") as c:
            if not c.streams.audio:
                raise ValueError("flac member has no audio stream")
            for frame in c.decode(c.streams.audio[0]):
                arr = frame.to_ndarray()
                if frame.format.name not in ("s16", "s16p"):
                    raise ValueError(f"flac member must hold 16-bit samples, got {frame.format.name}")
                parts.append(arr.reshape(-1))
    except av.error.FFmpegError as exc:
        raise ValueError(f"flac member does not decode ({exc})") from exc
    if not parts:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(parts).astype(np.int16, copy=False)


# -- frames ------------------------------------------------------------------------------
def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode one ``(H, W, 3)`` uint8 RGB frame as a baseline JPEG (4:2:0 chroma).

    ``quality`` is the libjpeg quality (1..100). Uses Pillow (libjpeg-turbo); the output is
    deterministic for a given Pillow build.
    """
    from PIL import Image  # noqa: PLC0415

    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"frame must be an (H, W, 3) uint8 RGB array, got {a.dtype} {a.shape}")
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (1 <= quality <= 100):
        raise ValueError(f"jpeg quality must be an int in [1, 100], got {quality!r}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a), "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=2, optimize=False)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode a frame member: ``(H, W, 3)`` uint8 RGB (Pillow; a plain reference decoder, the
    training reader may use a faster one). Raises ValueError on a damaged JPEG."""
    from PIL import Image  # noqa: PLC0415

    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"frame member is not a decodable JPEG ({exc})") from exc


# -- reading -----------------------------------------------------------------------------
def read_json_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file is missing, unreadable, not JSON or
    not an object (for records a run may have left half-written or never written)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def read_index(path: str | os.PathLike) -> dict[str, Any]:
    """Load a shard index (see module doc). Raises ValueError if it is not one."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"shard index {str(p)!r} is unreadable ({exc})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("samples"), list) or not isinstance(obj.get("shard"), str):
        raise ValueError(f"shard index {str(p)!r} lacks 'shard' / 'samples'")
    return obj


def read_members(
    shard: str | os.PathLike | int,
    sample: Mapping[str, Any],
    suffixes: Any = None,
) -> dict[str, bytes]:
    """Read one sample's members straight from its tar with ``os.pread`` (no tar parsing).

    Args:
        shard: the tar's path, or an open file descriptor of it (kept open; cheaper when
            reading many samples).
        sample: the sample's entry of the index (``{"key", "members"}``).
        suffixes: which members to read (iterable of suffixes); None reads all.

    Returns:
        ``{suffix: bytes}``.

    Raises:
        ValueError: the tar is shorter than the index says (truncated shard).
    """
    members = sample["members"]
    wanted = members.keys() if suffixes is None else suffixes
    own = not isinstance(shard, int)
    fd = os.open(os.fspath(shard), os.O_RDONLY) if own else shard
    try:
        out = {}
        for suf in wanted:
            off, size = members[suf]
            data = os.pread(fd, int(size), int(off))
            if len(data) != size:
                raise ValueError(
                    f"shard is truncated: member {sample.get('key')}.{suf} needs bytes "
                    f"[{off}, {off + size}), got {len(data)} of {size}"
                )
            out[suf] = data
        return out
    finally:
        if own:
            os.close(fd)


def read_index_head(path: str | os.PathLike, *, chunk: int = 1 << 16) -> dict[str, Any]:
    """The top-level fields of a shard index that come before ``samples`` (``shard``,
    ``num_samples``, ``label_ids``, ``sample_meta``, ...), read without parsing the member
    table: the file is read in growing chunks until the key ``"samples"`` is reached (the
    whole file when it has no such key). Fields after ``samples`` are not returned.

    Raises:
        ValueError: the file is not a JSON object, or is cut short.
        FileNotFoundError: no such file.
    """
    import codecs  # noqa: PLC0415

    p = Path(path)
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with open(p, "rb") as fh:
        state = {"text": "", "eof": False}

        def more() -> bool:
            if state["eof"]:
                return False
            data = fh.read(max(chunk, len(state["text"])))
            state["eof"] = not data
            try:
                state["text"] += utf8.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise ValueError(f"shard index {str(p)!r} is not UTF-8 ({exc})") from None
            return True

        def at(i: int) -> tuple[str, int]:
            """The first non-blank character at or after ``i`` ('' at the end) and its position."""
            while True:
                text = state["text"]
                while i < len(text) and text[i] in " \t\r\n":
                    i += 1
                if i < len(text) or not more():
                    return text[i : i + 1], i

        def value(i: int) -> tuple[Any, int]:
            while True:
                try:
                    obj, end = decoder.raw_decode(state["text"], i)
                except json.JSONDecodeError as exc:
                    if not more():
                        raise ValueError(f"shard index {str(p)!r} is not valid JSON ({exc})") from None
                    continue
                if end < len(state["text"]) or not more():  # a number at the very end may go on
                    return obj, end

        out: dict[str, Any] = {}
        ch, pos = at(0)
        if ch != "{":
            raise ValueError(f"shard index {str(p)!r} is not a JSON object")
        ch, pos = at(pos + 1)
        if ch == "}":
            return out
        while True:
            key, pos = value(pos)
            ch, pos = at(pos)
            if not isinstance(key, str) or ch != ":":
                raise ValueError(f"shard index {str(p)!r} is not valid JSON (bad key at character {pos})")
            if key == "samples":
                return out
            _, pos = at(pos + 1)
            out[key], pos = value(pos)
            ch, pos = at(pos)
            if ch == "}":
                return out
            if ch != ",":
                raise ValueError(f"shard index {str(p)!r} is not valid JSON (after {key!r})")
            _, pos = at(pos + 1)


def read_dataset_json(out_dir: str | os.PathLike, *, allow_dry_run: bool = False) -> dict[str, Any]:
    """Load and check ``OUT/dataset.json`` (any version in :data:`READABLE_VERSIONS`): the one
    reader of the file for every part of zorro.

    Args:
        out_dir: the prepared folder, or the path of its ``dataset.json``.
        allow_dry_run: accept the accounting of ``zorro prepare --dry-run`` (no shards);
            otherwise it is refused with a message saying so.

    Returns:
        the contents, as written (a version-1 file keeps its lists inline; read lists with
        :func:`iter_list`, which knows both versions).

    Raises:
        ValueError: no such file, not JSON, not a zorro shard description, a version this
            zorro does not read (newer: upgrade zorro), no ``shards`` / ``labels`` list, or a
            dry run's accounting when not allowed.
    """
    given = Path(out_dir)
    p = given if given.name == DATASET_JSON and not given.is_dir() else given / DATASET_JSON
    if not p.is_file():
        raise ValueError(f"{str(p)!r} does not exist: not a prepared shard folder (make one with `zorro prepare`)")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(p)!r} is unreadable ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        got = obj.get("format") if isinstance(obj, dict) else None
        raise ValueError(f"{str(p)!r} is not a zorro shard description (format {got!r}, expected {FORMAT_NAME!r})")
    version = obj.get("format_version")
    if version not in READABLE_VERSIONS:
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise ValueError(f"{str(p)!r} has format_version {version}; this zorro reads up to {FORMAT_VERSION}: upgrade zorro")
        raise ValueError(f"{str(p)!r} has format_version {version!r}; this zorro reads {list(READABLE_VERSIONS)}")
    for name in ("shards", "labels"):
        if not isinstance(obj.get(name), list):
            raise ValueError(f"{str(p)!r} has no {name!r} list")
    if obj.get("dry_run") and not allow_dry_run:
        raise ValueError(
            f"{str(p)!r} is the accounting of `zorro prepare --dry-run`: no shards were written; "
            f"run the same command without --dry-run to prepare them"
        )
    return obj


def iter_list(out_dir: str | os.PathLike, kind: str) -> Iterator[dict[str, Any]]:
    """The entries of one per-item list of a prepared folder, in order, either version.

    Args:
        out_dir: the prepared folder (or a dry run's).
        kind: ``"missing"``, ``"unreadable"``, ``"skipped_windows"`` or ``"dropped_rows"``.

    Yields:
        one dict per entry (version 2: a line of ``OUT/<kind>.jsonl``; version 1: an entry
        of the list inside ``dataset.json``, ``dropped_rows`` from ``extra``).

    Raises:
        ValueError: an unknown ``kind``, an unreadable line (with its number), a list file
            that is absent although ``counts`` says it has entries.
    """
    if kind not in LIST_FILES:
        raise ValueError(f"kind must be one of {sorted(LIST_FILES)}, got {kind!r}")
    folder = Path(out_dir)
    if folder.name == DATASET_JSON and not folder.is_dir():
        folder = folder.parent
    info = read_dataset_json(folder, allow_dry_run=True)
    if info["format_version"] == 1:
        entries = (info.get("extra") or {}).get("dropped_rows", []) if kind == "dropped_rows" else info.get(kind, [])
        yield from (dict(e) for e in entries)
        return
    name = (info.get("lists") or {}).get(kind, LIST_FILES[kind])
    path = folder / name
    if not path.is_file():
        if int((info.get("counts") or {}).get(kind, 0) or 0):
            raise ValueError(f"{str(path)!r} is missing, but {DATASET_JSON} counts {info['counts'][kind]} {kind} entries")
        return
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON object ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: not a JSON object")
            yield obj


class JsonlWriter:
    """Write a JSON-lines file atomically: lines go to a temporary file beside ``path``;
    :meth:`commit` fsyncs it and renames it over ``path``, :meth:`abort` removes it. A
    context manager commits on success and aborts on an exception.

    Args:
        path: the final file.
        tmp: the temporary file (default: a fresh name beside ``path``, safe when several
            processes write the same file).
    """

    def __init__(self, path: str | os.PathLike, *, tmp: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        self.tmp = new_temp_path(self.path) if tmp is None else Path(tmp)
        self._fh = open(self.tmp, "w", encoding="utf-8")
        self.count = 0

    def write(self, obj: Mapping[str, Any]) -> None:
        """Append one entry (a JSON object)."""
        self._fh.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        self._fh.write("\n")
        self.count += 1

    def write_line(self, line: str) -> None:
        """Append one entry given as its JSON text (one object, no newline)."""
        self._fh.write(line)
        self._fh.write("\n")
        self.count += 1

    def write_bytes_from(self, path: str | os.PathLike) -> None:
        """Append a whole JSON-lines file as it is (one entry a line, no blank lines),
        counting its lines."""
        self._fh.flush()
        out = self._fh.buffer
        ends_open = False
        with open(path, "rb") as src:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                self.count += chunk.count(b"\n")
                ends_open = not chunk.endswith(b"\n")
        if ends_open:
            out.write(b"\n")
            self.count += 1

    def write_all(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Append every entry of ``entries``."""
        for e in entries:
            self.write(e)

    def commit(self) -> Path:
        """Make the file durable and put it in place; returns ``path``."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file."""
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_json_atomic(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> None:
    """Write ``obj`` as JSON to ``path`` atomically, through ``path + '.tmp'`` (the name a
    restarted ``zorro prepare`` recognises and removes): readers see the old file or the whole
    new one, never a part. ``compact`` drops the indentation and spaces (shard indexes)."""
    p = Path(path)
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=1)
    write_bytes_atomic(p, (text + "\n").encode("utf-8"), tmp=p.with_name(p.name + ".tmp"))
