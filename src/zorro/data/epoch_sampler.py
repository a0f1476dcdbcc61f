"""What zorro's distributed, resumable samplers share: one rank's index list per epoch, the
epoch it belongs to, and the resume offset.

A subclass computes :meth:`EpochSampler.rank_indices` (this rank's whole list for an epoch,
a pure function of the seed, the epoch, the world size and the rank); the base class selects
the epoch (:meth:`~EpochSampler.set_epoch`), leaves out the first :attr:`~EpochSampler.skip`
indices when a run resumes mid-epoch, and iterates.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochSampler", "check_world"]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_world(num_replicas: object, rank: object) -> tuple[int, int]:
    """Validate a world size and a rank: ``(num_replicas, rank)`` as ints.

    Raises:
        ValueError: ``num_replicas`` is not an int >= 1, or ``rank`` not an int in
            ``[0, num_replicas)``.
    """
    if not _is_int(num_replicas) or num_replicas < 1:
        raise ValueError(f"num_replicas must be an int >= 1, got {num_replicas!r}")
    if not _is_int(rank) or not (0 <= rank < num_replicas):
        raise ValueError(f"rank must be an int in [0, {num_replicas}), got {rank!r}")
    return int(num_replicas), int(rank)


class EpochSampler(Sampler[int]):
    """Base class: yields ``rank_indices(epoch)[skip:]``.

    Attributes:
        num_samples: length of this rank's epoch list (the same on every rank).
        epoch: the epoch whose list is produced (:meth:`set_epoch`).
        skip: indices at the start of this rank's epoch list left out (exact resume: a run
            resumed after ``k`` batches of size ``b`` sets ``skip = k * b``).
    """

    num_samples: int = 0
    epoch: int = 0
    skip: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose list :meth:`__iter__` produces (call before each epoch)."""
        self.epoch = int(epoch)

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's whole list for ``epoch`` (default :attr:`epoch`), before :attr:`skip`:
        ``(num_samples,)`` int64. Subclasses define it."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        if not (0 <= self.skip <= self.num_samples):
            raise ValueError(f"skip must be in [0, {self.num_samples}], got {self.skip}")
        return iter(self.rank_indices()[self.skip :].tolist())

    def __len__(self) -> int:
        return self.num_samples - self.skip
