"""Batching clips whose modalities differ, and accounting for skipped (unreadable) files.

Missing modalities are batched with *zero fill plus presence masks*: ``audio`` is
``(B, samples)`` with zero rows where an example has no audio and ``has_audio[b]`` False
(same for video). Items may carry more modalities (a ``text`` caption as ids ``(L,)``, a
feature ``sequence`` ``(T, D)``): every item key ``<name>`` that goes with a
``has_<name>`` presence flag is one, and the batch gets ``<name>`` padded on the right to
the longest in the batch, ``<name>_mask`` (True at real positions) and ``has_<name>``.
:func:`split_by_modality` then cuts a batch into sub-batches that share the same available
modalities (audio+video, audio only, video only, ...), so the trainer runs the model on the
inputs each example has instead of feeding it zeros.

Skipped files: the dataset returns :class:`~zorro.data.datasets.Skipped` (or None) for a file
it cannot decode; :func:`collate_clips` drops those and records ``num_skipped`` and
``skipped`` (``(path, reason)`` pairs) in the batch. Batches cross from DataLoader worker
processes to the main process, where :class:`SkipTracker` sums them, logs each bad file once
and reports the count at the end of the epoch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch

from zorro.data.datasets import Skipped
from zorro.fileio import atomic_write_text

logger = logging.getLogger(__name__)


def _stack_optional(values: list[torch.Tensor | None], what: str) -> torch.Tensor | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    shape = present[0].shape
    for v in present:
        if v.shape != shape:
            raise ValueError(f"all {what} in a batch must have the same shape, got {tuple(shape)} and {tuple(v.shape)}")
    out = torch.zeros((len(values),) + tuple(shape), dtype=present[0].dtype)
    for i, v in enumerate(values):
        if v is not None:
            out[i] = v
    return out


#: Modalities every batch describes (``has_audio``, ``has_video``), present or not.
CORE_MODALITIES = ("audio", "video")


def item_modalities(item: dict[str, Any]) -> list[str]:
    """The extra modalities an item carries besides audio and video: keys ``<name>`` with a
    ``has_<name>`` flag (in the item's order)."""
    return [k[4:] for k in item if k.startswith("has_") and k[4:] not in CORE_MODALITIES and k[4:] in item]


def _pad_sequences(values: list[torch.Tensor | None], name: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(L_i, ...)`` tensors (None where absent) -> ``(B, max L_i, ...)`` zero-padded and the
    ``(B, max L_i)`` bool mask of real positions; ``(None, None)`` when none is present."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    first = present[0]
    for v in present:
        if v.dim() < 1 or v.shape[1:] != first.shape[1:] or v.dtype != first.dtype:
            raise ValueError(f"all {name} items in a batch must be (length, ...) tensors agreeing beyond their length and in "
                             f"dtype, got {tuple(first.shape)} {first.dtype} and {tuple(v.shape)} {v.dtype}")
    longest = max(int(v.shape[0]) for v in present)
    out = torch.zeros((len(values), longest) + tuple(first.shape[1:]), dtype=first.dtype)
    mask = torch.zeros(len(values), longest, dtype=torch.bool)
    for i, v in enumerate(values):
        if v is not None:
            out[i, : v.shape[0]] = v
            mask[i, : v.shape[0]] = True
    return out, mask


def _valid_samples(item: dict[str, Any]) -> int:
    """Samples of real audio in an item: its ``audio_valid_samples`` when it says, else the
    whole waveform; 0 without audio."""
    audio = item.get("audio")
    if audio is None:
        return 0
    valid = item.get("audio_valid_samples")
    return int(audio.shape[-1]) if valid is None else min(int(valid), int(audio.shape[-1]))


def collate_clips(items: Sequence[dict[str, Any] | Skipped | None]) -> dict[str, Any]:
    """Batch dataset items (dicts from :class:`~zorro.data.datasets.ClipDataset`).

    Returns a dict with ``audio`` ``(B, samples)`` float (zeros where missing; None when no
    example has audio), ``audio_features`` ``(B, F, T)`` (raw front-end features when the
    items carry them, e.g. front-end features cached by the trainer; else None), ``video``
    ``(B, 3, T, H, W)`` (zeros where missing; None when no
    example has video), ``has_audio``/``has_video`` ``(B,)`` bool, ``label`` ``(B,)`` long
    or ``(B, C)`` float, ``index`` ``(B,)`` long, ``path`` (list of B str), ``padded``
    ``(B,)`` bool, ``audio_valid_samples`` ``(B,)`` long (samples of real audio, the rest of
    each waveform being zero padding; the whole length when an item does not say; 0 without
    audio), ``num_skipped`` (int: items dropped because their file was unreadable)
    and ``skipped`` (list of ``(path, reason)``). ``B`` may be 0 when every item was skipped.

    Every other modality the items carry (an item key ``<name>`` with a ``has_<name>`` flag,
    e.g. ``text`` ids ``(L,)`` or a feature sequence ``(T, D)``) adds ``<name>`` ``(B, L_max,
    ...)`` zero-padded on the right (None when no item has it), ``<name>_mask`` ``(B, L_max)``
    bool (True at real positions; all False for an item without it) and ``has_<name>`` ``(B,)``.
    """
    kept = [it for it in items if isinstance(it, dict)]
    skipped = [(it.path, it.reason) for it in items if isinstance(it, Skipped)]
    num_skipped = len(items) - len(kept)
    for it in items:
        if not (it is None or isinstance(it, (dict, Skipped))):
            raise TypeError(f"collate_clips expects dataset dicts, Skipped or None, got {type(it).__name__}")
    audio = _stack_optional([it.get("audio") for it in kept], "audio waveforms")
    audio_features = None
    if any(it.get("audio_features") is not None for it in kept):
        if any(it.get("audio") is not None and it.get("audio_features") is None for it in kept):
            raise ValueError("some items with audio carry audio_features and some do not; give them to all or none")
        audio_features = _stack_optional([it.get("audio_features") for it in kept], "audio features")
    video = _stack_optional([it.get("video") for it in kept], "videos")
    labels = [it["label"] for it in kept]
    if labels and isinstance(labels[0], torch.Tensor):
        label = torch.stack([torch.as_tensor(l, dtype=torch.float32) for l in labels])
    else:
        label = torch.as_tensor([int(l) for l in labels], dtype=torch.long)
    extra: dict[str, Any] = {}
    for name in dict.fromkeys(n for it in kept for n in item_modalities(it)):
        values = [it.get(name) for it in kept]
        extra[name], extra[f"{name}_mask"] = _pad_sequences(values, name)
        extra[f"has_{name}"] = torch.tensor([v is not None for v in values], dtype=torch.bool)
    return {
        "audio": audio,
        "audio_features": audio_features,
        "video": video,
        "has_audio": torch.tensor([it.get("audio") is not None for it in kept], dtype=torch.bool),
        "has_video": torch.tensor([it.get("video") is not None for it in kept], dtype=torch.bool),
        **extra,
        "label": label,
        "index": torch.as_tensor([int(it["index"]) for it in kept], dtype=torch.long),
        "path": [str(it.get("path", "")) for it in kept],
        "padded": torch.tensor([bool(it.get("padded", False)) for it in kept], dtype=torch.bool),
        "audio_valid_samples": torch.tensor([_valid_samples(it) for it in kept], dtype=torch.long),
        "num_skipped": num_skipped,
        "skipped": skipped,
    }


def batch_modalities(batch: dict[str, Any]) -> list[str]:
    """Names of the modalities a batch describes: every ``has_<name>`` key, in batch order."""
    return [k[4:] for k in batch if k.startswith("has_")]


def _modality_keys(name: str) -> tuple[str, ...]:
    return (name, f"{name}_mask", f"{name}_features")


def split_by_modality(batch: dict[str, Any], modalities: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """Yield sub-batches of ``batch`` whose examples share their available modalities.

    Args:
        batch: from :func:`collate_clips`.
        modalities: the modalities to group by (default: every ``has_<name>`` of the batch);
            the others are set to None in every sub-batch.

    Groups come in order of the presence pattern, most modalities first, and for audio and
    video as before: audio+video, audio only, video only (empty groups are not yielded;
    examples with none of ``modalities`` are left out). Each sub-batch has the keys of
    ``batch`` restricted to its examples, a modality's keys (``<name>``, ``<name>_mask``,
    ``<name>_features``) set to None when the group lacks it, and ``batch_index`` (``(b,)``
    long): the positions of its examples in the original batch.
    """
    if not isinstance(batch, dict) or "has_audio" not in batch or "has_video" not in batch:
        raise TypeError("split_by_modality expects a batch dict from collate_clips")
    names = batch_modalities(batch) if modalities is None else list(modalities)
    unknown = [m for m in names if f"has_{m}" not in batch]
    if unknown:
        raise ValueError(f"the batch describes no modality {unknown}; it has {batch_modalities(batch)}")
    size = batch["has_audio"].shape[0]
    flags = torch.stack([batch[f"has_{m}"] for m in names], dim=1) if names else torch.zeros(size, 0, dtype=torch.bool)
    patterns = sorted({tuple(row) for row in flags.tolist() if any(row)}, key=lambda p: (-sum(p), [not x for x in p]))
    for pattern in patterns:
        sel = torch.nonzero((flags == torch.tensor(pattern, dtype=torch.bool)).all(dim=1), as_tuple=False).flatten()
        idx = sel.tolist()
        drop = {key for m, has in zip(names, pattern) if not has for key in _modality_keys(m)}
        drop |= {key for m in batch_modalities(batch) if m not in names for key in _modality_keys(m)}
        sub: dict[str, Any] = {}
        for key, value in batch.items():
            if key in ("num_skipped", "skipped"):
                continue
            if key in drop:
                sub[key] = None
            elif isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
                sub[key] = value[sel]
            elif isinstance(value, list) and len(value) == size:
                sub[key] = [value[i] for i in idx]
            else:
                sub[key] = value
        sub["batch_index"] = sel
        yield sub


def modality_inputs(batch: dict[str, Any], modalities: Sequence[str]) -> dict[str, Any]:
    """The model's keyword inputs from a (sub-)batch: ``<name>`` for each of ``modalities``
    the batch holds, with ``<name>_mask`` when the batch pads it (the mask is dropped when it
    pads nothing). Audio features are not included (callers choose between waveforms and
    ``audio_features``)."""
    out: dict[str, Any] = {}
    for name in modalities:
        value = batch.get(name)
        if value is None:
            continue
        out[name] = value
        mask = batch.get(f"{name}_mask")
        if mask is not None and not bool(mask.all()):
            out[f"{name}_mask"] = mask
    return out


class SkipTracker:
    """Main-process accounting of unreadable files across DataLoader workers.

    Call :meth:`update` on every batch (it reads ``num_skipped`` and ``skipped``), and
    :meth:`end_epoch` after the epoch: it logs the epoch's count (warning when > 0) and
    returns it. Each bad file is logged once per tracker (warning), however many workers or
    epochs meet it.
    """

    def __init__(self, label: str = "") -> None:
        self.label = label  # said in the log lines, e.g. "evaluation"
        self.epoch_skipped = 0
        self.total_skipped = 0
        self.bad_files: dict[str, str] = {}  # path -> reason, in the order first met
        self.times_skipped: dict[str, int] = {}  # path -> items skipped from it

    def update(self, batch: dict[str, Any]) -> int:
        """Account for one batch; returns its number of skipped items."""
        n = int(batch.get("num_skipped", 0))
        self.epoch_skipped += n
        self.total_skipped += n
        for path, reason in batch.get("skipped", ()):
            self.times_skipped[path] = self.times_skipped.get(path, 0) + 1
            if path not in self.bad_files:
                self.bad_files[path] = reason
                logger.warning("skipping unreadable media file%s %s: %s", f" ({self.label})" if self.label else "", path, reason)
        return n

    def track(self, batches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Yield ``batches`` (e.g. a DataLoader), accounting for each as :meth:`update` does."""
        for batch in batches:
            self.update(batch)
            yield batch

    def write_report(self, path: str | os.PathLike) -> Path:
        """Write the bad files met so far to ``path`` as JSON Lines, one
        ``{"path", "reason", "times_skipped"}`` object per file in the order first met (an
        empty file when none was skipped); replaced atomically. Returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps({"path": p, "reason": r, "times_skipped": self.times_skipped.get(p, 0)}) + "\n"
            for p, r in self.bad_files.items()
        ]
        return atomic_write_text(out, "".join(lines))

    def end_epoch(self, epoch: int | None = None) -> int:
        """Log and return the number of items skipped since the last call, then reset it."""
        n = self.epoch_skipped
        tag = f"epoch {epoch}" if epoch is not None else "epoch"
        if n:
            logger.warning("%s: skipped %d unreadable item(s) (%d distinct bad files so far)", tag, n, len(self.bad_files))
        else:
            logger.info("%s: no unreadable items", tag)
        self.epoch_skipped = 0
        return n
