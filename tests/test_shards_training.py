"""Training from prepared shards (data.train_shards / data.eval_shards), exact resume after
SIGKILL without re-reading, and folders accepted wherever a manifest is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shards_toy import make_shards
from toy import tiny_config
from zorro.checkpoint import latest_checkpoint
from zorro.data import ClipDataset, ShardDataset, ShardSampler, read_manifest
from zorro.train import Trainer, train

TESTS = Path(__file__).resolve().parent
CLIP = {"duration": 0.25, "num_frames": 4, "image_size": 16, "sample_rate": 16000}


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_shards")
    kw = dict(per_shard=5, num_classes=4, seconds=2.0, sample_rate=16000, frames=8, height=24, width=32)
    return make_shards(root / "train", n=24, **kw), make_shards(root / "eval", n=8, **kw)


def _config(out, shard_sets, **sections):
    data = {"train_shards": str(shard_sets[0]), "eval_shards": str(shard_sets[1]), **CLIP, "batch_size": 4}
    data.update(sections.pop("data", {}))
    return tiny_config(out, data=data, **sections)


def test_training_config_reads_shards(tmp_path, shard_sets):
    trainer = Trainer(_config(tmp_path, shard_sets, optim={"epochs": 1}))
    assert isinstance(trainer.train_set, ShardDataset) and isinstance(trainer.eval_set, ShardDataset)
    assert isinstance(trainer.sampler, ShardSampler) and trainer.steps_per_epoch == 6
    assert trainer.train_set.video_dtype == "uint8" and trainer.eval_set.video_dtype == "float32"
    assert trainer.vocab.names == ["class0", "class1", "class2", "class3"]
    metrics = trainer.fit()
    assert 0.0 <= metrics["average"]["top1"] <= 1.0
    assert trainer.train_set.num_read == 24 and trainer.train_set.num_skipped == 0


def test_manifest_and_shards_for_one_split_are_refused(tmp_path, shard_sets):
    with pytest.raises(ValueError, match="train_manifest or data.train_shards, not both"):
        Trainer(_config(tmp_path, shard_sets, data={"train_manifest": "x.csv"}))
    with pytest.raises(ValueError, match="8000 Hz"):
        Trainer(_config(tmp_path, shard_sets, data={"sample_rate": 8000}))


SLOW_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
import zorro.data.shards.reader as reader
slow = reader.ShardDataset.__getitem__
def getitem(self, index):
    time.sleep(0.02)
    return slow(self, index)
reader.ShardDataset.__getitem__ = getitem
from test_shards_training import _config
from zorro.train import train
from pathlib import Path
train(_config({out!r}, (Path({train!r}), Path({eval!r})), **{sections!r}))
"""


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.mark.slow
def test_resume_from_shards_after_sigkill_is_exact_and_reads_nothing_twice(tmp_path, shard_sets):
    sections = {"optim": {"epochs": 3}, "run": {"ckpt_every": 2}, "data": {"eval_shards": None}}
    reference = Trainer(_config(tmp_path / "reference", shard_sets, **sections))
    reference.fit()
    assert reference.train_set.num_read == 3 * 24  # 3 epochs, 6 batches of 4 each

    killed = tmp_path / "killed"
    code = SLOW_RUN.format(tests=str(TESTS), out=str(killed), train=str(shard_sets[0]), eval=str(shard_sets[1]), sections=sections)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "ckpt-000008").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model").exists()
    step = int(latest_checkpoint(killed / "checkpoints").name.split("-")[-1])
    assert 2 <= step < 18  # the checkpoint the run had finished when it was killed

    resumed = Trainer(_config(killed, shard_sets, **sections))
    resumed.fit()
    # the resumed run read only the batches after the checkpoint: nothing of the first `step`
    assert resumed.train_set.num_read == (18 - step) * 4
    a, b = _weights(tmp_path / "reference"), _weights(killed)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _class_tree(root: Path) -> Path:
    import media

    for c in ("cat", "dog"):
        for i in range(2):
            (root / c).mkdir(parents=True, exist_ok=True)
            media.make_media(root / c / f"{c}{i}.mp4", duration=0.6, width=32, height=32, sample_rate=16000, layout="mono")
    return root


def test_a_folder_per_class_tree_works_where_a_manifest_does(tmp_path, shard_sets):
    tree = _class_tree(tmp_path / "tree")
    entries = read_manifest(tree)  # raised "manifest ... does not exist" before
    assert [e.labels for e in entries] == [("cat",), ("cat",), ("dog",), ("dog",)]
    cfg = tiny_config(tmp_path / "run", data={"train_manifest": str(tree), "eval_manifest": str(tree), **CLIP, "batch_size": 2},
                      optim={"epochs": 1})
    trainer = Trainer(cfg)
    assert isinstance(trainer.train_set, ClipDataset) and trainer.vocab.names == ["cat", "dog"]
    assert len(trainer.eval_set) == 4
    trainer.fit()
    assert ClipDataset.from_manifest(tree, train=False, **CLIP)[0]["label"] == 0
    with pytest.raises(ValueError, match="prepared shard folder"):
        read_manifest(shard_sets[0])
    with pytest.raises(ValueError, match="does not exist"):
        read_manifest(tmp_path / "nothing.csv")


def _ddp_rank(rank, world, port, out, train_dir, seed):
    """One rank of a gloo DDP run over a damaged shard folder (spawned)."""
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"})
    import torch.distributed as dist

    try:
        from zorro.train import Trainer

        trainer = Trainer(tiny_config(out, data={"train_shards": train_dir, **CLIP, "batch_size": 2}, optim={"epochs": 1}, run={"seed": seed}))
        trainer.fit()
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, f"steps-rank{rank}.json"), "w") as f:
            json.dump({"step": trainer.step, "dropped": trainer.dropped_with_other_rank}, f)
    finally:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_survives_a_batch_lost_to_damage_on_one_rank(tmp_path):
    import socket

    import torch.multiprocessing as mp

    folder = make_shards(tmp_path / "shards", n=24, per_shard=4, num_classes=4, seconds=2.0, sample_rate=16000, frames=8,
                         height=24, width=32)
    for shard in range(4):  # 16 of 24 samples gone
        (folder / f"shard-{shard:06d}.tar").unlink()
    missing = set(range(16))

    def lone_empty_batch(seed):  # some micro-batch is all-missing on exactly one of the two ranks
        lists = [ShardSampler([4] * 6, num_replicas=2, rank=r, seed=seed).rank_indices(0) for r in range(2)]
        return any(sum(set(x[m:m + 2].tolist()) <= missing for x in lists) == 1 for m in range(0, 12, 2))

    seed = next(s for s in range(100) if lone_empty_batch(s))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_rank, args=(r, 2, port, str(tmp_path / "run"), str(folder), seed)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    hung = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not hung, "a rank hung after another rank's batch was lost to damage"
    assert all(p.exitcode == 0 for p in procs)
    assert (tmp_path / "run" / "model" / "config.json").exists()
    # the ranks pass over such a micro-batch together: same optimiser steps, so collectives
    # stay paired and a resume lands at the same step on every rank
    done = [json.loads((tmp_path / "run" / f"steps-rank{r}.json").read_text()) for r in range(2)]
    assert done[0]["step"] == done[1]["step"] > 0
    assert sum(d["dropped"] for d in done) >= 1


def test_cli_trains_from_shards(tmp_path, shard_sets):
    import yaml

    from toy import TINY_MODEL
    from zorro.cli import main

    config = {"model": {"arch": dict(TINY_MODEL), "precision": "fp32"}, "data": {**CLIP, "batch_size": 4, "num_workers": 0},
              "optim": {"epochs": 1, "warmup_steps": 1}, "run": {"progress": False}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--train-shards", str(shard_sets[0]),
                 "--eval-shards", str(shard_sets[1]), "--out", str(out)]) == 0
    assert (out / "eval_metrics.json").exists() and (out / "labels.json").exists()
