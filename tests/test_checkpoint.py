"""Training checkpoints: exact resume, RNG states, atomicity under simulated crashes, wrappers."""

from __future__ import annotations

import json
import os
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import zorro.checkpoint as ckpt_mod
from conftest import tiny_kwargs
from zorro import Zorro
from zorro.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_training_checkpoint,
    save_training_checkpoint,
)
from zorro.hub import UnsafeCheckpointError, WeightsMismatchError

TRAIN_CONFIG = {"lr": 1e-3, "batch_size": 2, "schedule": "linear-warmup"}


@pytest.fixture(autouse=True)
def _quiet_crop_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="audio features of shape")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit.*")
        yield


def setup(seed=0):
    torch.manual_seed(seed)
    model = Zorro(**tiny_kwargs())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 3))
    return model, opt, sched


def train_steps(model, opt, sched, n):
    """n optimisation steps on random data drawn from the global torch RNG (so RNG state matters)."""
    for _ in range(n):
        audio, video = torch.rand(2, 2000) - 0.5, torch.randn(2, 3, 2, 8, 8)
        loss = model(audio=audio, video=video).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_resume_reproduces_uninterrupted_training_exactly(tmp_path):
    model, opt, sched = setup()
    train_steps(model, opt, sched, 2)
    path = save_training_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, step=2,
                                    config=TRAIN_CONFIG, extra={"epoch": 0, "best": 0.5})
    assert path == tmp_path / "ckpt-000002"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "meta.json", "model.safetensors", "state.pt"]
    train_steps(model, opt, sched, 2)  # the uninterrupted run
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    fresh, fresh_opt, fresh_sched = setup(seed=123)  # different init, different RNG
    info = load_training_checkpoint(tmp_path, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched, restore_rng=True)
    assert info["step"] == 2 and info["config"] == TRAIN_CONFIG and info["extra"] == {"epoch": 0, "best": 0.5}
    assert info["path"] == path and info["model_config"] == fresh.config.to_dict()
    assert fresh_sched.last_epoch == 2
    train_steps(fresh, fresh_opt, fresh_sched, 2)
    for key, value in reference.items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_rng_states_python_numpy_torch_restored(tmp_path):
    model, _, _ = setup()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    save_training_checkpoint(tmp_path, model=model, step=0)
    first = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3))
    load_training_checkpoint(tmp_path, model=model, restore_rng=False)
    assert random.random() != first[0]
    load_training_checkpoint(tmp_path, model=model, restore_rng=True)
    again = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3))
    assert again[:3] == first[:3] and torch.equal(again[3], first[3])


def test_latest_pointer_listing_and_keep_last(tmp_path):
    model, opt, sched = setup()
    assert latest_checkpoint(tmp_path) is None
    for step in (10, 20, 30):
        save_training_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, step=step, keep_last=2)
    assert (tmp_path / "latest").read_text().strip() == "ckpt-000030"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000020", "ckpt-000030"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000030"
    save_training_checkpoint(tmp_path, model=model, step=1_234_567)
    assert latest_checkpoint(tmp_path).name == "ckpt-1234567"


def test_crash_inside_the_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model, opt, sched = setup()
    save_training_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, step=1, config=TRAIN_CONFIG)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    train_steps(model, opt, sched, 1)

    def crash(obj, path):  # dies half-way through writing state.pt
        path.write_bytes(b"PK\x03\x04 torn")
        raise KeyboardInterrupt("simulated kill during save")

    monkeypatch.setattr(ckpt_mod, "_torch_save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_training_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=sched, step=2)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-000001"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000001", "latest"]  # temporary cleaned up
    fresh, fresh_opt, fresh_sched = setup(seed=9)
    assert load_training_checkpoint(tmp_path, model=fresh, optimizer=fresh_opt, scheduler=fresh_sched)["step"] == 1
    for key, value in good.items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_hard_kill_leftovers_and_stale_pointer_are_ignored(tmp_path, monkeypatch):
    model, _, _ = setup()
    save_training_checkpoint(tmp_path, model=model, step=1)
    # A kill (no cleanup) in the middle of writing step 2: the temporary directory stays behind.
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(ckpt_mod, "_torch_save", lambda obj, path: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_training_checkpoint(tmp_path, model=model, step=2)
    monkeypatch.undo()
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert len(leftovers) == 1 and leftovers[0].startswith("ckpt-000002.tmp-")
    assert latest_checkpoint(tmp_path).name == "ckpt-000001"
    # A pointer to a checkpoint that never completed (e.g. edited by hand): fall back to scanning.
    (tmp_path / "latest").write_text("ckpt-000005\n")
    assert latest_checkpoint(tmp_path).name == "ckpt-000001"
    load_training_checkpoint(tmp_path, model=model)


def test_resaving_a_step_replaces_it(tmp_path):
    model, _, _ = setup()
    save_training_checkpoint(tmp_path, model=model, step=3, extra={"version": 1})
    save_training_checkpoint(tmp_path, model=model, step=3, extra={"version": 2})
    assert load_training_checkpoint(tmp_path, model=model)["extra"] == {"version": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000003", "latest"]


def test_wrappers_are_unwrapped(tmp_path):
    model, _, _ = setup()
    compiled = torch.compile(model)  # not run: only the wrapper matters here
    path = save_training_checkpoint(tmp_path, model=nn.DataParallel(compiled), step=1)
    from safetensors.torch import load_file

    keys = load_file(str(path / "model.safetensors")).keys()
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)
    fresh, _, _ = setup(seed=3)
    load_training_checkpoint(path, model=torch.compile(fresh))
    assert torch.equal(fresh.norm.weight, model.norm.weight)
    # the checkpoint directory is also a from_pretrained folder
    assert torch.equal(Zorro.from_pretrained(str(path)).norm.weight, model.norm.weight)


def test_errors(tmp_path):
    model, opt, _ = setup()
    with pytest.raises(TypeError, match="config must be JSON"):
        save_training_checkpoint(tmp_path, model=model, step=1, config={"device": torch.device("cpu")})
    with pytest.raises(ValueError, match="step"):
        save_training_checkpoint(tmp_path, model=model, step=-1)
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        load_training_checkpoint(tmp_path, model=model)
    save_training_checkpoint(tmp_path, model=model, step=1)
    with pytest.raises(ValueError, match="no optimizer state"):
        load_training_checkpoint(tmp_path, model=model, optimizer=opt)
    other = Zorro(**tiny_kwargs(dim=16, heads=2, dim_head=8))
    with pytest.raises(WeightsMismatchError, match="shape mismatches"), pytest.warns(UserWarning, match="dim"):
        load_training_checkpoint(tmp_path, model=other)
    with pytest.warns(UserWarning, match="pos_embed"):
        load_training_checkpoint(tmp_path, model=Zorro(**tiny_kwargs(pos_embed="none")))


def test_state_file_with_armed_pickle_is_refused(tmp_path):
    model, _, _ = setup()
    path = save_training_checkpoint(tmp_path, model=model, step=1)
    marker = tmp_path / "pwned"

    class Armed:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"rng": {}, "optimizer": Armed()}, path / "state.pt")
    with pytest.raises(UnsafeCheckpointError):
        load_training_checkpoint(path, model=model)
    assert not marker.exists()
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["kind"] == "zorro-training-checkpoint" and meta["step"] == 1
