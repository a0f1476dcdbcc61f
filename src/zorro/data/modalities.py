"""Modalities beyond audio and video on the data side: manifest columns, shard members, items.

A manifest may carry one column per extra modality, named after the modality:

* a ``text`` kind column holds the string itself (a caption); datasets return it as token
  ids ``(L,)`` int64 from :class:`zorro.tokenizer.ByteTokenizer`;
* a ``sequence`` kind column holds the path of a ``.npy`` file of a ``(T, input_dim)``
  float array (relative paths are resolved like the media paths); datasets return it as a
  ``(T, input_dim)`` float32 tensor.

An empty cell (or a missing / null key in JSON Lines) means the clip lacks that modality:
the item holds None under the modality's name and ``has_<name>`` False, and the collate
marks it absent, so the losses leave the clip out of every pair involving it.

``zorro prepare`` stores them as members of the sample's key: ``<name>.txt`` (UTF-8) and
``<name>.npy`` (a float32 array in NumPy's format), see :func:`member_suffix`.

Declare which columns are modalities with a mapping ``name -> kind`` (:func:`check_extra`);
a model's whole table is accepted too (:func:`extra_from_table` keeps the text and sequence
entries).
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping

import numpy as np

__all__ = ["DATA_KINDS", "check_extra", "extra_from_table", "member_suffix", "encode_sequence", "decode_sequence",
           "load_sequence", "sequence_array"]

#: The extra modality kinds the datasets and ``zorro prepare`` read (audio and video are built in).
DATA_KINDS = ("text", "sequence")
_SUFFIX = {"text": "txt", "sequence": "npy"}
_CORE = ("audio", "video")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower() or name.startswith("_"):
        raise ValueError(f"an extra modality's name must be a lower-case identifier (the manifest column, e.g. 'text'), got {name!r}")
    if name in _CORE:
        raise ValueError(f"{name!r} is read from the media file, not from a manifest column; name the extra modality otherwise")
    if name in ("path", "label", "labels", "start", "end"):
        raise ValueError(f"{name!r} is a manifest column of its own and cannot name a modality")
    return name


def check_extra(modalities: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate a declaration of extra modalities: ``name -> kind`` (or ``name -> spec``, a
    dict with a ``kind``), kinds in :data:`DATA_KINDS`. Returns ``{name: kind}`` in order
    (``{}`` for None).

    Raises:
        TypeError: not a mapping.
        ValueError: a bad name (not a lower-case identifier, ``audio``/``video``, a column
            the manifest uses otherwise) or a kind the data side does not read.
    """
    if modalities is None:
        return {}
    if not isinstance(modalities, Mapping):
        raise TypeError(f"extra modalities must be a mapping name -> kind (e.g. {{'text': 'text'}}), got {type(modalities).__name__}")
    out: dict[str, str] = {}
    for name, spec in modalities.items():
        kind = spec.get("kind") if isinstance(spec, Mapping) else spec
        if kind not in DATA_KINDS:
            raise ValueError(f"extra modality {name!r} has kind {kind!r}; manifests and shards hold the kinds {list(DATA_KINDS)} "
                             f"(other kinds: give the inputs through your own Dataset, see docs/training.md)")
        out[_check_name(name)] = kind
    return out


def extra_from_table(table: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The extra modalities a model's modality table asks the data for: ``{name: kind}`` of
    its ``text`` and ``sequence`` entries (audio and video come from the media file).

    Raises:
        ValueError: the table has a modality of another kind (a registered custom kind):
            manifests and shards cannot hold it.
    """
    out = {}
    for name, spec in table.items():
        kind = spec.get("kind") if isinstance(spec, Mapping) else spec
        if kind in ("audio", "video") and name in _CORE:
            continue
        out[name] = spec
    return check_extra(out)


def member_suffix(name: str, kind: str) -> str:
    """The shard member suffix of extra modality ``name``: ``<name>.txt`` (text) or
    ``<name>.npy`` (sequence)."""
    if kind not in _SUFFIX:
        raise ValueError(f"kind must be one of {list(DATA_KINDS)}, got {kind!r}")
    return f"{name}.{_SUFFIX[kind]}"


def sequence_array(value: Any, where: str) -> np.ndarray:
    """Check a feature sequence: a 2-D ``(T, D)`` array of finite real numbers, ``T, D >= 1``;
    returns it as C-contiguous float32. Raises ValueError naming ``where``."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{where}: a sequence must be a 2-D (steps, features) array with both >= 1, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{where}: a sequence must hold numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: the sequence holds NaN or inf values (or values beyond float32)")
    return arr


def load_sequence(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` feature sequence file: ``(T, D)`` float32 (see :func:`sequence_array`).

    Raises:
        ValueError: the file is missing, unreadable, not a NumPy array (pickled objects are
            refused) or not a ``(T, D)`` array of finite numbers; the message names the file.
    """
    try:
        arr = np.load(os.fspath(path), allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"sequence file {os.fspath(path)!r} does not exist") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"sequence file {os.fspath(path)!r} is not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"sequence file {os.fspath(path)!r} holds several arrays (.npz); give one (T, D) array per .npy file")
    return sequence_array(arr, f"sequence file {os.fspath(path)!r}")


def encode_sequence(arr: np.ndarray) -> bytes:
    """A ``(T, D)`` sequence -> the bytes of a ``<name>.npy`` member (float32, NumPy format)."""
    buf = io.BytesIO()
    np.save(buf, sequence_array(arr, "sequence"), allow_pickle=False)
    return buf.getvalue()


def decode_sequence(data: bytes) -> np.ndarray:
    """The bytes of a ``<name>.npy`` member -> ``(T, D)`` float32. Raises ValueError when
    damaged."""
    try:
        arr = np.load(io.BytesIO(bytes(data)), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"not a .npy array ({exc})") from None
    return sequence_array(arr, "sequence member")

