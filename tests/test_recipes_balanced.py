"""AudioSet balanced sampling: weights, determinism, disjoint ranks, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from zorro.data.balanced import BalancedSampler, balanced_weights, label_counts, shard_label_ids


def test_weights_hand_example():
    # counts: class 0 in 3 clips, class 1 in 1 clip, class 2 in 2 clips
    ids = [[0], [0, 2], [0, 1], [2], []]
    assert label_counts(ids, 4).tolist() == [3, 1, 2, 0]
    w = balanced_weights(ids, 4, eps=0.5)
    expected = [1 / 3.5, 1 / 3.5 + 1 / 2.5, 1 / 3.5 + 1 / 1.5, 1 / 2.5, 0.0]
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-15)
    assert balanced_weights([[1, 1]], 2)[0] == pytest.approx(1 / 1.01)  # a repeated id counts once


@pytest.mark.parametrize(
    "ids, classes, match",
    [([[0], [3]], 3, r"clip 1: label id 3"), ([[0]], 0, "num_classes"), ([], 2, "no clip"), ([[], []], 2, "no clip has a label")],
)
def test_weights_errors(ids, classes, match):
    with pytest.raises(ValueError, match=match):
        balanced_weights(ids, classes)


def test_balanced_draws_even_out_a_long_tail():
    # 900 clips of class 0, 90 of class 1, 10 of class 2: uniform sampling sees class 2 in 1 %
    ids = [[0]] * 900 + [[1]] * 90 + [[2]] * 10
    sampler = BalancedSampler(balanced_weights(ids, 3), num_samples=30000, seed=0)
    drawn = np.bincount([ids[i][0] for i in sampler], minlength=3) / 30000
    np.testing.assert_allclose(drawn, [1 / 3, 1 / 3, 1 / 3], atol=0.02)


def test_deterministic_new_each_epoch_and_never_draws_unlabelled():
    w = balanced_weights([[0], [1], [], [0, 1]] * 5, 2)
    a = BalancedSampler(w, num_samples=40, seed=7)
    b = BalancedSampler(w, num_samples=40, seed=7)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert BalancedSampler(w, num_samples=40, seed=8).rank_indices().tolist() != first
    assert not any(i % 4 == 2 for i in first)  # weight 0 clips


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_take_disjoint_slices_of_one_draw(world):
    w = np.arange(1, 11, dtype=float)
    total = 50
    single = BalancedSampler(w, num_samples=total, seed=3).rank_indices(epoch=2)
    parts = [BalancedSampler(w, num_samples=total, num_replicas=world, rank=r, seed=3).rank_indices(epoch=2) for r in range(world)]
    per = total // world
    assert all(len(p) == per for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), single[: per * world])


def test_resume_with_skip_continues_the_same_draws():
    w = np.ones(20)
    full = BalancedSampler(w, num_samples=30, num_replicas=2, rank=1, seed=5)
    full.set_epoch(4)
    whole = list(full)
    resumed = BalancedSampler(w, num_samples=30, num_replicas=2, rank=1, seed=5)
    resumed.set_epoch(4)
    resumed.skip = 6
    assert len(resumed) == 9 and list(resumed) == whole[6:]
    resumed.skip = 16
    with pytest.raises(ValueError, match="skip"):
        list(resumed)


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="weights"):
        BalancedSampler([0.0, 0.0], num_samples=4)
    with pytest.raises(ValueError, match="weights"):
        BalancedSampler([1.0, -1.0], num_samples=4)
    with pytest.raises(ValueError, match="num_samples"):
        BalancedSampler([1.0], num_samples=0)
    with pytest.raises(ValueError, match="rank"):
        BalancedSampler([1.0], num_samples=4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="cannot give"):
        BalancedSampler([1.0], num_samples=1, num_replicas=2, rank=0)


def test_label_ids_read_from_prepared_shards(tmp_path):
    from zorro.data.shards.writer import SampleData, write_samples

    labels = ["a", "b", "c"]
    samples = [SampleData(labels=lab, audio=np.zeros(160, np.float32), end=0.01) for lab in
               [("a",), ("b", "c"), ("c",), (), ("a", "b", "c")]]
    write_samples(tmp_path, samples, labels=labels, multi_label=True, samples_per_shard=2, sample_rate=16000)
    ids, num_classes = shard_label_ids(tmp_path)
    assert num_classes == 3
    assert [sorted(x) for x in ids] == [[0], [1, 2], [2], [], [0, 1, 2]]


def test_label_ids_of_in_memory_clips_and_subsets():
    import torch
    from torch.utils.data import Subset

    from zorro.data.balanced import dataset_label_ids

    class Clips:  # the shape of the trainer's CachedClips
        def __init__(self, labels):
            self.items = [{"label": lab, "audio": None} for lab in labels]

        def __len__(self):
            return len(self.items)

    assert dataset_label_ids(Clips([2, 0, 2])) == ([[2], [0], [2]], 3)
    multi = Clips([torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0, 0.0, 0.0])])
    assert dataset_label_ids(multi) == ([[0, 2], []], 4)
    assert dataset_label_ids(Subset(Clips([5, 1, 3]), [2, 0])) == ([[3], [5]], 6)
    with pytest.raises(TypeError, match="balanced sampling needs the label ids"):
        dataset_label_ids([1, 2, 3])
