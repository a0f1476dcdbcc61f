"""The order in which a training process reads samples of prepared shards, one process or many.

:class:`ShardSampler` yields sample indices (positions in the global order of
:class:`~zorro.data.shards.reader.ShardDataset`: shards in ``dataset.json`` order, then index
order) for one rank of a data-parallel job. Guarantees, for ``N`` samples and ``W`` ranks:

* **Same length on every rank**: each rank gets ``N // W`` indices (``drop_last=True``, the
  default) or ``ceil(N / W)`` (``drop_last=False``), so every rank makes the same number of
  batches and none waits for the others at the end of an epoch.
* **Exactly once per epoch**: the ranks' lists are disjoint slices of one permutation of the
  ``N`` samples. ``drop_last=True`` leaves out the last ``N mod W`` samples of that permutation
  (different ones every epoch); ``drop_last=False`` repeats the first ``W - N mod W`` of them
  instead. A DataLoader with ``drop_last=True`` further drops the last ``len mod batch_size``
  indices of each rank.
* **New order each epoch, deterministic**: the permutation depends only on ``(seed, epoch)``
  (NumPy's PCG64 seeded with both), not on the rank, world size, worker count or platform.
  Indices are produced in the main process, so DataLoader workers (``num_workers > 0``) do not
  change them.
* **Resume without re-reading**: :attr:`skip` drops the first ``skip`` indices of this rank's
  epoch list before any is handed out, so a run resumed after ``k`` batches starts reading at
  batch ``k + 1`` (nothing of the first ``k`` batches is read again).

With ``window_shards > 0`` the order keeps I/O local: the shards are shuffled, cut into
groups of ``window_shards`` consecutive shards, and the samples of each group are shuffled
among themselves, so a reader moves through a few shards at a time. The default (0) shuffles
all samples globally, which mixes classes best when shards were written in class order.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from zorro.data.epoch_sampler import EpochSampler, check_world


def _shard_sizes(source: Any) -> list[int]:
    if isinstance(source, (int, np.integer)) and not isinstance(source, bool):
        sizes = [int(source)]
    elif hasattr(source, "shard_sizes"):
        sizes = [int(n) for n in source.shard_sizes]
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        sizes = [int(n) for n in source]
    else:
        raise TypeError(
            f"ShardSampler needs a ShardDataset, a sequence of per-shard sample counts or a sample count, got {type(source).__name__}"
        )
    if any(n < 0 for n in sizes):
        raise ValueError(f"shard sample counts must be >= 0, got {sizes[:10]}")
    if sum(sizes) < 1:
        raise ValueError("ShardSampler needs at least one sample")
    return sizes


class ShardSampler(EpochSampler):
    """Distributed, resumable sampler over prepared shards (see the module docstring).

    Args:
        source: a :class:`~zorro.data.shards.reader.ShardDataset` (its ``shard_sizes``), a
            sequence of per-shard sample counts, or a total sample count (one shard).
        num_replicas: world size ``W`` (>= 1).
        rank: this process's rank in ``[0, W)``.
        shuffle: permute every epoch (otherwise the global order, sliced per rank).
        seed: base seed of the permutation.
        drop_last: drop the ``N mod W`` tail (True) or pad by repeating (False).
        window_shards: 0 for a global shuffle, else the number of consecutive shuffled shards
            whose samples are mixed together (I/O locality).

    Attributes:
        epoch: the epoch whose order is produced (:meth:`set_epoch`).
        skip: indices of this rank's epoch list to leave out at the start (exact resume).
    """

    def __init__(
        self,
        source: Any,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        window_shards: int = 0,
    ) -> None:
        self.shard_sizes = _shard_sizes(source)
        self.total = sum(self.shard_sizes)
        self.num_replicas, self.rank = check_world(num_replicas, rank)
        if not isinstance(window_shards, (int, np.integer)) or window_shards < 0:
            raise ValueError(f"window_shards must be an int >= 0, got {window_shards!r}")
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.window_shards = int(window_shards)
        if self.drop_last:
            self.num_samples = self.total // self.num_replicas
            if self.num_samples < 1:
                raise ValueError(f"{self.total} samples cannot give every one of {self.num_replicas} ranks a sample with drop_last=True")
        else:
            self.num_samples = math.ceil(self.total / self.num_replicas)
        self.epoch = 0
        self.skip = 0

    def epoch_order(self, epoch: int | None = None) -> np.ndarray:
        """The global permutation of epoch ``epoch`` (default :attr:`epoch`): ``(N,)`` int64."""
        epoch = self.epoch if epoch is None else int(epoch)
        if not self.shuffle:
            return np.arange(self.total, dtype=np.int64)
        rng = np.random.default_rng([self.seed, epoch])
        if self.window_shards == 0 or len(self.shard_sizes) == 1:
            return rng.permutation(self.total).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(self.shard_sizes)])
        shard_order = rng.permutation(len(self.shard_sizes))
        parts = []
        for g in range(0, len(shard_order), self.window_shards):
            members = [np.arange(offsets[s], offsets[s + 1], dtype=np.int64) for s in shard_order[g : g + self.window_shards]]
            group = np.concatenate(members)
            parts.append(group[rng.permutation(len(group))])
        return np.concatenate(parts)

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's whole epoch list (before :attr:`skip`): ``(num_samples,)`` int64."""
        order = self.epoch_order(epoch)
        need = self.num_samples * self.num_replicas
        if need > len(order):  # drop_last=False: pad by repeating the start of the order
            order = np.concatenate([order, np.resize(order, need - len(order))])
        return order[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]
