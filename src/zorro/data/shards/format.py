"""The prepared-shard format (version 1): names, layouts and the codecs of the members.

An output folder ``OUT`` of ``zorro prepare`` (:func:`zorro.data.prepare.prepare_shards`) holds:

* ``OUT/dataset.json`` (written last, atomically): ``format`` (``"zorro-shards"``),
  ``format_version`` (1), ``num_samples``, ``labels`` (vocabulary in class-id order),
  ``multi_label``, ``unreadable`` (``[{"path", "reason", "source"}]``, ``source`` = index in
  the source list), ``missing`` (annotated items without a media file, as the caller gave
  them, ``[]`` for a plain manifest), ``skipped_windows`` (``[{"path", "window", "start",
  "reason"}]``: windows of written sources that decoded to nothing), ``shards``
  (``[{"name", "index", "num_samples", "bytes"}]``), ``counts`` (``{"sources", "written",
  "unreadable", "missing", "samples", "skipped_windows"}``: ``sources == written + unreadable
  + missing``; ``written`` counts source files, ``samples`` counts stored windows),
  ``settings`` (every decode/window/storage setting: the fields of
  :class:`zorro.data.prepare.PrepareSettings` with ``store_size`` resolved), ``versions``
  (zorro, torch, av, ffmpeg, numpy, pillow, python), ``fingerprint`` (sha256 of settings and
  sources, used to resume) and ``extra`` (the caller's ``extra_info``, ``{}`` otherwise).
* ``OUT/shard-000000.tar``, ``OUT/shard-000001.tar``, ... (:func:`shard_name`): plain
  uncompressed POSIX (ustar) tar files in the WebDataset layout, and beside each one
  ``OUT/shard-000000.index.json`` (:func:`index_name`)::

      {"shard": "shard-000000.tar", "format_version": 1, "bytes": <tar size>,
       "num_samples": n, "source_start": i0, "source_end": i1, "first_sample": k0,
       "unreadable": [{"source": i, "path": p, "reason": r}, ...],
       "fingerprint": "<sha256 of the settings and sources>", "settings": {...},
       "samples": [{"key": "s000000123", "members": {"json": [offset, size],
                                                     "wav": [offset, size],
                                                     "000.jpg": [offset, size], ...}}, ...]}

  ``offset`` is the byte position of the member's *data* in the tar (after its 512-byte
  header), ``size`` its length in bytes, so ``os.pread(fd, size, offset)`` returns the member
  (:func:`read_members`). A shard holds the samples of the sources
  ``[source_start, source_end)`` of the source list; ``unreadable`` lists those of them that
  could not be decoded. The global sample order is the shards in ``dataset.json`` order, then
  index order; sample ``k`` (0-based, global) has key :func:`sample_key` ``(k)``.

One sample is the tar members sharing a key (``s`` + 9 digits, no dots):

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

The WebDataset convention splits a member name at the first dot, so ``webdataset`` sees the
suffixes ``json``, ``wav``/``flac`` and ``000.jpg``, ... -- the same strings as the
``members`` keys of the index.
"""

from __future__ import annotations

import io
import json
import os
import struct
import wave
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from zorro.fileio import write_bytes_atomic

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DATASET_JSON",
    "AUDIO_SUFFIXES",
    "shard_name",
    "index_name",
    "sample_key",
    "frame_suffix",
    "is_frame_suffix",
    "encode_audio",
    "decode_audio",
    "encode_jpeg",
    "decode_jpeg",
    "read_index",
    "read_members",
    "read_dataset_json",
    "write_json_atomic",
]

FORMAT_NAME = "zorro-shards"
FORMAT_VERSION = 1
#: name of the dataset description inside an output folder
DATASET_JSON = "dataset.json"
#: member suffixes an audio waveform can have
AUDIO_SUFFIXES = ("wav", "flac")
#: largest number of frames one sample can store (3-digit frame suffixes)
MAX_FRAMES = 1000
_KEY_DIGITS = 9


def shard_name(number: int) -> str:
    """File name of shard ``number`` (0-based): ``shard-000000.tar``."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
        raise ValueError(f"shard number must be an int >= 0, got {number!r}")
    return f"shard-{int(number):06d}.tar"


def index_name(number: int) -> str:
    """File name of the index of shard ``number``: ``shard-000000.index.json``."""
    return shard_name(number)[: -len(".tar")] + ".index.json"


def sample_key(number: int) -> str:
    """Key of global sample ``number`` (0-based): ``s000000123`` (no dots)."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
        raise ValueError(f"sample number must be an int >= 0, got {number!r}")
    if number >= 10**_KEY_DIGITS:
        raise ValueError(f"sample number {number} does not fit the {_KEY_DIGITS}-digit key")
    return f"s{int(number):0{_KEY_DIGITS}d}"


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


def read_dataset_json(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Load ``OUT/dataset.json`` and check it is a version-1 zorro shard set."""
    p = Path(out_dir) / DATASET_JSON
    if not p.is_file():
        raise ValueError(f"{str(p)!r} does not exist: not a prepared shard folder (run `zorro prepare`)")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(p)!r} is unreadable ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise ValueError(f"{str(p)!r} is not a {FORMAT_NAME} description")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{str(p)!r} has format_version {obj.get('format_version')!r}; this zorro reads {FORMAT_VERSION}")
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, *, compact: bool = False) -> None:
    """Write ``obj`` as JSON to ``path`` atomically, through ``path + '.tmp'`` (the name a
    restarted ``zorro prepare`` recognises and removes): readers see the old file or the whole
    new one, never a part. ``compact`` drops the indentation and spaces (shard indexes)."""
    p = Path(path)
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=1)
    write_bytes_atomic(p, (text + "\n").encode("utf-8"), tmp=p.with_name(p.name + ".tmp"))
