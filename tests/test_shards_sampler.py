"""ShardSampler: exactly once per epoch, equal lengths on every rank, new deterministic
orders, resume by skipping; and the same under real DDP (gloo) with DataLoader workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zorro.data import ShardSampler
from zorro.data.balanced import BalancedSampler

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("sizes", [[7], [4, 4, 3], [5, 0, 9, 1], [1] * 10])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("window", [0, 2])
def test_ranks_partition_each_epoch(sizes, world, window):
    n = sum(sizes)
    for drop_last in (True, False):
        if drop_last and n < world:
            continue
        samplers = [ShardSampler(sizes, num_replicas=world, rank=r, seed=3, drop_last=drop_last, window_shards=window) for r in range(world)]
        for epoch in range(3):
            for s in samplers:
                s.set_epoch(epoch)
            lists = [list(s) for s in samplers]
            assert len({len(x) for x in lists}) == 1  # the same length on every rank
            seen = [i for x in lists for i in x]
            assert all(0 <= i < n for i in seen)
            if drop_last:
                assert len(seen) == len(set(seen)) == n - n % world  # disjoint, only the tail dropped
            else:
                assert set(seen) == set(range(n)) and len(seen) == n + (-n) % world


def test_order_changes_every_epoch_and_is_deterministic():
    a, b = ShardSampler([50, 50], seed=1), ShardSampler([50, 50], seed=1)
    orders = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        orders.append(list(a))
        assert orders[-1] == list(b)
    assert len({tuple(o) for o in orders}) == 4
    c = ShardSampler([50, 50], seed=2)
    assert list(c) != orders[0]
    assert list(ShardSampler([50, 50], shuffle=False)) == list(range(100))


def test_skip_resumes_mid_epoch_without_the_first_items():
    s = ShardSampler([6, 6, 6], num_replicas=2, rank=1, seed=0)
    s.set_epoch(5)
    full = list(s)
    s.skip = 4
    assert list(s) == full[4:] and len(s) == len(full) - 4
    s.skip = len(full) + 1
    with pytest.raises(ValueError, match="skip"):
        list(s)


def test_window_keeps_reading_local():
    sizes = [10] * 8
    s = ShardSampler(sizes, seed=0, window_shards=2)
    order = np.array(list(s))
    shard_of = order // 10
    for g in range(4):  # each run of 20 samples comes from 2 shards
        assert len(set(shard_of[20 * g : 20 * (g + 1)].tolist())) == 2
    assert sorted(order.tolist()) == list(range(80))


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        ShardSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        ShardSampler(10, num_replicas=0)
    with pytest.raises(ValueError, match="cannot give every one"):
        ShardSampler(2, num_replicas=3)
    with pytest.raises(TypeError, match="ShardSampler needs"):
        ShardSampler("abc")


# ------------------------------------------------------------------ under DDP (gloo)

RANK_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from torch.utils.data import DataLoader
from zorro.data import ShardDataset, ShardSampler, collate_clips

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
ds = ShardDataset({shards!r}, train=True, duration=1.0, num_frames=2, image_size=8, video_dtype="uint8")
out = {{}}
for workers in (0, 2):
    sampler = ShardSampler(ds, num_replicas=world, rank=rank, seed=7)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers, collate_fn=collate_clips, drop_last=True)
        batches = [b["index"].tolist() for b in loader]
        gathered = [None] * world
        dist.all_gather_object(gathered, batches)
        out[f"w{{workers}}e{{epoch}}"] = gathered
dist.barrier()
if rank == 0:
    with open({result!r}, "w") as fh:
        json.dump(out, fh)
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_shards(tmp_path_factory) -> Path:
    from shards_toy import make_shards

    return make_shards(tmp_path_factory.mktemp("ddp") / "out", n=23, per_shard=5, seconds=1.0, frames=2, height=8, width=8)


@pytest.mark.slow
def test_ddp_gloo_exactly_once_equal_batches(ddp_shards, tmp_path):
    procs, results = [], {}
    for world in (1, 2, 3):  # the three process groups run side by side
        results[world] = tmp_path / f"result{world}.json"
        script = RANK_SCRIPT.format(tests=str(TESTS), shards=str(ddp_shards), result=str(results[world]))
        port = _free_port()
        for rank in range(world):
            env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            procs.append(subprocess.Popen([sys.executable, "-c", script], env=env))
    for p in procs:
        assert p.wait(timeout=180) == 0
    n, batch = 23, 3
    for world, result in results.items():
        out = json.loads(result.read_text())
        per_rank = n // world
        for workers in (0, 2):
            epochs = []
            for epoch in range(2):
                ranks = out[f"w{workers}e{epoch}"]
                assert len(ranks) == world
                assert {len(b) for b in ranks} == {per_rank // batch}  # equal batch counts on every rank
                seen = [i for b in ranks for batch_ in b for i in batch_]
                assert len(seen) == len(set(seen)) == world * (per_rank // batch) * batch  # each sample at most once
                epochs.append(ranks)
            assert epochs[0] != epochs[1]  # a new order every epoch
        assert out["w2e0"] == out["w0e0"] and out["w2e1"] == out["w0e1"]  # workers change nothing


@pytest.mark.parametrize("kwargs", [{"num_replicas": True}, {"num_replicas": 2, "rank": True}, {"num_replicas": 0}, {"num_replicas": 2, "rank": 2}])
def test_world_size_and_rank_must_be_plain_ints(kwargs):
    # a bool is an int to isinstance: rank=True used to be taken as rank 1
    for make in (lambda: ShardSampler(10, **kwargs), lambda: BalancedSampler([1.0] * 10, num_samples=10, **kwargs)):
        with pytest.raises(ValueError, match="num_replicas|rank"):
            make()
