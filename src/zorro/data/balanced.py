"""Class-balanced sampling for multi-label data with a long tail (AudioSet).

Each clip gets the weight ``w_i = sum_{c in labels(i)} 1 / (n_c + eps)``, where ``n_c`` is
the number of clips carrying label ``c`` in the training set (the weighting AST and CAV-MAE
use for AudioSet's full training set). An epoch is ``num_samples`` draws *with
replacement* from the distribution ``w / sum(w)``, so clips of rare classes are seen more
often and a clip may appear several times in one epoch.

:class:`BalancedSampler` has the interface of :class:`zorro.data.shards.sampler.ShardSampler`
(``set_epoch``, ``skip``, ``num_samples``, ``rank_indices``), with these guarantees:

* **Deterministic**: the draws of an epoch depend only on ``(seed, epoch)`` and the weights
  (NumPy's PCG64 seeded with both), not on the rank, world size or DataLoader workers.
* **Disjoint per rank**: the epoch's ``num_samples`` draws are made once and rank ``r`` takes
  the ``r``-th of ``W`` equal consecutive slices (``num_samples // W`` draws each; the last
  ``num_samples mod W`` draws are dropped), so ranks never share a draw (a clip drawn twice
  may still land on two ranks) and all get the same number of batches.
* **Exact on resume**: :attr:`skip` leaves out the first ``skip`` indices of this rank's epoch
  list before any is handed out, so a resumed run continues with the very draws an
  uninterrupted run would have used, without re-reading the earlier ones.

A clip without any label has weight 0 and is never drawn; :func:`balanced_weights` counts and
logs such clips. The weights are computed with array operations over a
:class:`~zorro.data.sample_meta.LabelIds`, and a shard folder's label ids come from its
shard indexes (:func:`shard_label_ids`), so a 2M-clip AudioSet folder is ready to sample in
seconds without reading a sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from zorro.data.epoch_sampler import EpochSampler, check_world
from zorro.data.sample_meta import LabelIds

logger = logging.getLogger(__name__)

__all__ = ["label_counts", "balanced_weights", "BalancedSampler", "shard_label_ids", "dataset_label_ids"]

#: the smoothing term ``eps`` of the weights (as AST / CAV-MAE use)
DEFAULT_EPS = 0.01


def _as_label_ids(label_ids: Sequence[Sequence[int]] | LabelIds, num_classes: int) -> LabelIds:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(label_ids, LabelIds):
        ids = label_ids
        bad = ids.values[(ids.values < 0) | (ids.values >= num_classes)]
        if bad.size:
            i = int(np.searchsorted(ids.offsets, int(np.flatnonzero((ids.values < 0) | (ids.values >= num_classes))[0]), side="right") - 1)
            raise ValueError(f"clip {i}: label id {int(bad[0])!r} is not an int in [0, {num_classes})")
        return ids
    for i, row in enumerate(label_ids):
        for c in row:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not (0 <= c < num_classes):
                raise ValueError(f"clip {i}: label id {c!r} is not an int in [0, {num_classes})")
    return LabelIds.from_lists(label_ids)


def _unique_pairs(ids: LabelIds, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sample, class)`` of every label, a class listed twice for one clip counted once."""
    pairs = ids.sample_index() * int(num_classes) + ids.values.astype(np.int64)
    pairs.sort(kind="stable")  # in place; already grouped by sample, so a cheap sort
    if pairs.size > 1:
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    return pairs // int(num_classes), pairs % int(num_classes)


def label_counts(label_ids: Sequence[Sequence[int]] | LabelIds, num_classes: int) -> np.ndarray:
    """Number of clips carrying each class (a clip listing a class twice counts once).

    Args:
        label_ids: per clip, the class ids of its labels (lists, or a
            :class:`~zorro.data.sample_meta.LabelIds` for millions of clips).
        num_classes: ``C``.

    Returns:
        ``(C,)`` int64 counts.

    Raises:
        ValueError: a class id outside ``[0, C)``, a non-positive ``C``.
    """
    ids = _as_label_ids(label_ids, num_classes)
    _, classes = _unique_pairs(ids, num_classes)
    return np.bincount(classes, minlength=int(num_classes)).astype(np.int64)


def balanced_weights(label_ids: Sequence[Sequence[int]] | LabelIds, num_classes: int, *, eps: float = DEFAULT_EPS) -> np.ndarray:
    """Per-clip sampling weights ``w_i = sum_{c in labels(i)} 1 / (n_c + eps)`` (vectorised:
    2M clips take well under a second).

    Args:
        label_ids: per clip, the class ids of its labels (``(N,)`` lists or a
            :class:`~zorro.data.sample_meta.LabelIds`).
        num_classes: ``C``.
        eps: smoothing added to each class count (> 0).

    Returns:
        ``(N,)`` float64 weights (unnormalised; 0 for a clip without labels).

    Raises:
        ValueError: as :func:`label_counts`, ``eps <= 0``, no clip at all, or no clip with a label.
    """
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if len(label_ids) == 0:
        raise ValueError("balanced_weights: no clip")
    ids = _as_label_ids(label_ids, num_classes)
    samples, classes = _unique_pairs(ids, num_classes)
    counts = np.bincount(classes, minlength=int(num_classes))
    per_class = 1.0 / (counts.astype(np.float64) + float(eps))
    weights = np.bincount(samples, weights=per_class[classes], minlength=len(ids)).astype(np.float64)
    unlabelled = int((np.diff(ids.offsets) == 0).sum())
    if unlabelled == len(weights):
        raise ValueError("balanced_weights: no clip has a label; balanced sampling needs labels")
    if unlabelled:
        logger.warning("balanced sampling: %d of %d clips have no label and are never drawn", unlabelled, len(weights))
    return weights


class BalancedSampler(EpochSampler):
    """Weighted sampling with replacement, distributed and resumable (see the module docstring).

    Args:
        weights: ``(N,)`` non-negative per-clip weights (e.g. :func:`balanced_weights`).
        num_samples: draws per epoch over all ranks (e.g. the training set size, or a
            fixed budget such as 200,000 for AudioSet's 2M clips).
        num_replicas: world size ``W``.
        rank: this process's rank in ``[0, W)``.
        seed: base seed.

    Attributes:
        num_samples: this rank's draws per epoch (``total // W``).
        total: draws per epoch over all ranks, as given.
        epoch: the epoch whose draws are produced (:meth:`set_epoch`).
        skip: indices of this rank's epoch list to leave out at the start (exact resume).
    """

    def __init__(self, weights: Sequence[float] | np.ndarray, *, num_samples: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be finite, >= 0, and not all 0")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        self.num_replicas, self.rank = check_world(num_replicas, rank)
        self.probabilities = w / w.sum()
        self.total = int(num_samples)
        self.seed = int(seed)
        self.num_samples = self.total // self.num_replicas
        if self.num_samples < 1:
            raise ValueError(f"{self.total} draws per epoch cannot give each of {self.num_replicas} ranks one")
        self.epoch = 0
        self.skip = 0

    def epoch_draws(self, epoch: int | None = None) -> np.ndarray:
        """All ``total`` draws of epoch ``epoch`` (default :attr:`epoch`), every rank's: ``(total,)`` int64."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch])
        return rng.choice(len(self.probabilities), size=self.total, replace=True, p=self.probabilities).astype(np.int64)

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's epoch list (before :attr:`skip`): ``(num_samples,)`` int64."""
        draws = self.epoch_draws(epoch)
        return draws[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]


def shard_label_ids(folder: str | os.PathLike) -> tuple[LabelIds, int]:
    """Label ids of every sample of a prepared shard folder, in the global sample order:
    from the shard indexes (format 2, no sample read), else from each sample's JSON (a
    format-1 folder; logged as the slower path).

    Args:
        folder: an output folder of ``zorro prepare``.

    Returns:
        ``(label_ids, num_classes)``: a :class:`~zorro.data.sample_meta.LabelIds` (a
        sequence of per-sample lists) into the folder's ``labels``; the vocabulary size.

    Raises:
        ValueError: as :func:`zorro.data.sample_meta.sample_metadata`, or a sample without
            ``label_ids``.
    """
    from zorro.data.sample_meta import index_label_ids, sample_metadata
    from zorro.data.shards.format import read_dataset_json

    info = read_dataset_json(folder)
    ids = index_label_ids(folder, info)
    if ids is not None:
        return ids, len(info["labels"])
    logger.info("%s: the shard indexes carry no label ids (a folder written before format 2): reading every sample's labels "
                "(slower; prepare the folder again to start from the indexes)", folder)
    samples, info = sample_metadata(folder)
    out = []
    for i, s in enumerate(samples):
        if "label_ids" not in s:
            raise ValueError(f"{folder}: sample {i} has no label_ids")
        out.append([int(c) for c in s["label_ids"]])
    return LabelIds.from_lists(out), len(info["labels"])


def dataset_label_ids(dataset: Any) -> tuple[Sequence[Sequence[int]], int]:
    """Label ids of every item of a training dataset, in item order, without decoding media.

    Supports a :class:`~zorro.data.shards.reader.ShardDataset` (ids mapped into its
    vocabulary, from the shard indexes: :meth:`ShardDataset.label_ids`), a
    :class:`~zorro.data.ClipDataset` (every clip of a file has the file's labels), in-memory
    clips holding an ``items`` list of item dicts (the trainer's ``CachedClips``), a
    :class:`torch.utils.data.Subset` of any of them, and wrappers exposing the wrapped
    dataset as ``.dataset`` with the same length.

    Returns:
        ``(label_ids, num_classes)``: per item its ids (a list of lists, or a
        :class:`~zorro.data.sample_meta.LabelIds` for shards); the vocabulary size.

    Raises:
        TypeError: a dataset of another kind.
    """
    from torch.utils.data import Subset

    if isinstance(dataset, Subset):
        ids, num_classes = dataset_label_ids(dataset.dataset)
        if isinstance(ids, LabelIds):
            return ids.take(np.asarray(dataset.indices, dtype=np.int64)), num_classes
        return [ids[int(i)] for i in dataset.indices], num_classes
    vocab = getattr(dataset, "vocab", None)
    if callable(getattr(dataset, "label_ids", None)) and hasattr(dataset, "shard_sizes") and vocab is not None:
        return dataset.label_ids(), len(vocab)
    entries = getattr(dataset, "entries", None)
    if entries is not None and vocab is not None:
        per_file = [[vocab.index(lab) for lab in e.labels] for e in entries]
        clips = len(dataset) // max(1, len(entries))
        return [per_file[i // clips] for i in range(len(dataset))], len(vocab)
    inner = getattr(dataset, "dataset", None)
    if inner is not None and len(inner) == len(dataset):
        return dataset_label_ids(inner)
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and items and all(isinstance(it, dict) and "label" in it for it in items):
        return _item_label_ids([it["label"] for it in items])
    raise TypeError(
        f"balanced sampling needs the label ids of the training set; {type(dataset).__name__} is not a ShardDataset, "
        "ClipDataset, in-memory clips (CachedClips) or a Subset of one"
    )


def _item_label_ids(labels: list[Any]) -> tuple[list[list[int]], int]:
    """Label ids from in-memory item labels: ints (single label) or multi-hot vectors.
    The class count is the vector length, or the largest id + 1 (classes without any clip do
    not change the weights)."""
    import torch

    out: list[list[int]] = []
    width = 0
    for lab in labels:
        if isinstance(lab, torch.Tensor) and lab.dim() == 1:
            out.append(torch.nonzero(lab > 0).flatten().tolist())
            width = max(width, lab.shape[0])
        else:
            out.append([int(lab)])
            width = max(width, int(lab) + 1)
    return out, width
