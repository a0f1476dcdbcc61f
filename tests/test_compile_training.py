"""``model.compile: true`` in training runs: the same losses as an uncompiled run, checkpoints
that load into an uncompiled model and back (and resume), bf16, DDP (gloo, 2 processes) and
the command line (pretrain, train, evaluate). Compiling takes minutes on 2 cores: all slow,
except the refusal of a flex training run on CPU, which happens before anything compiles."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from toy import ToyAV, ddp_worker, tiny_config, toy_vocab
from zorro.checkpoint import latest_checkpoint, load_training_checkpoint, save_training_checkpoint
from zorro.hub import strip_compile_prefixes
from zorro.model import Zorro
from zorro.train import Trainer, train
from zorro.train.build import compile_backbone


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flex_training_on_cpu_is_refused_when_the_trainer_is_built(tmp_path):
    cfg = tiny_config(tmp_path, model={"arch": {**tiny_config(tmp_path).model.arch, "attn_backend": "flex"}})
    with pytest.raises(ValueError, match="attn_backend='sdpa'"):
        Trainer(cfg, ToyAV(n=16), None, toy_vocab())


def test_compile_backbone_compiles_what_the_tasks_call_and_keeps_weight_names():
    from conftest import tiny_kwargs

    model = Zorro(**tiny_kwargs(depth=1))
    names = list(model.state_dict())
    compile_backbone(model)
    assert list(model.state_dict()) == names  # no "_orig_mod."
    assert getattr(model.encode, "_torchdynamo_orig_callable", None) == Zorro.encode.__get__(model)  # what the tasks call
    assert model._compiled_call_impl is not None  # and model(...)


def test_checkpoints_of_a_compiled_submodule_load_uncompiled_and_back(tmp_path):
    """An objective holding ``torch.compile(backbone)`` saves plain key names; they load into
    the uncompiled objective and into a compiled one (nothing is run, so nothing compiles)."""
    from conftest import tiny_kwargs

    class Objective(nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone
            self.head = nn.Linear(32, 3)

    torch.manual_seed(0)
    compiled = Objective(torch.compile(Zorro(**tiny_kwargs(depth=1))))
    assert any("_orig_mod." in k for k in compiled.state_dict())
    path = save_training_checkpoint(tmp_path, model=compiled, step=3)
    from safetensors.torch import load_file

    keys = load_file(str(path / "model.safetensors")).keys()
    assert keys and not any("_orig_mod" in k for k in keys)
    plain = Objective(Zorro(**tiny_kwargs(depth=1)))
    load_training_checkpoint(path, model=plain)
    again = Objective(torch.compile(Zorro(**tiny_kwargs(depth=1))))
    load_training_checkpoint(path, model=again)
    ref = {strip_compile_prefixes(k): v for k, v in compiled.state_dict().items()}
    for model in (plain, again):
        for k, v in model.state_dict().items():
            assert torch.equal(v, ref[strip_compile_prefixes(k)]), k


@pytest.mark.slow
def test_compiled_run_matches_uncompiled_resumes_and_loads_uncompiled(tmp_path):
    steps = dict(optim={"epochs": 2}, run={"ckpt_every": 2})
    plain, compiled = tmp_path / "plain", tmp_path / "compiled"
    m_plain = train(tiny_config(plain, **steps), ToyAV(n=20), ToyAV(n=12, seed=1), toy_vocab())
    m_comp = train(tiny_config(compiled, model={"compile": True}, **steps), ToyAV(n=20), ToyAV(n=12, seed=1), toy_vocab())
    torch.testing.assert_close(torch.tensor(_losses(compiled)), torch.tensor(_losses(plain)), atol=1e-4, rtol=1e-4)
    assert m_comp["average"]["top1"] == pytest.approx(m_plain["average"]["top1"])
    # the compiled run's checkpoint loads into an uncompiled trainer, and its model folder into Zorro
    trainer = Trainer(tiny_config(tmp_path / "fresh"), ToyAV(n=20), None, toy_vocab())
    state = load_training_checkpoint(latest_checkpoint(compiled / "checkpoints"), model=trainer.objective)
    assert state["step"] > 0
    a, b = Zorro.from_pretrained(str(compiled / "model")).state_dict(), Zorro.from_pretrained(str(plain / "model")).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4, msg=k)
    # and an uncompiled run's checkpoint resumes compiled: one more epoch on top of the plain run
    more = train(tiny_config(plain, model={"compile": True}, optim={"epochs": 3}, run={"ckpt_every": 2}),
                 ToyAV(n=20), ToyAV(n=12, seed=1), toy_vocab())
    assert len(_losses(plain)) > len(_losses(compiled)) and more


@pytest.mark.slow
def test_compiled_bf16_run_trains(tmp_path):
    train(tiny_config(tmp_path, model={"compile": True, "precision": "bf16"}, optim={"epochs": 1}), ToyAV(n=16), None, toy_vocab())
    losses = _losses(tmp_path)
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert (tmp_path / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_compiled_ddp_matches_single_process(tmp_path):
    steps = dict(optim={"epochs": 1}, model={"compile": True})
    single = tmp_path / "single"
    train(tiny_config(single, data={"batch_size": 8}, **steps), ToyAV(), None, toy_vocab())  # the 64 clips ddp_worker trains on
    ddp = tmp_path / "ddp"
    mp.spawn(ddp_worker, args=(2, _free_port(), str(ddp), dict(data={"batch_size": 4}, **steps)), nprocs=2, join=True)
    torch.testing.assert_close(torch.tensor(_losses(ddp)), torch.tensor(_losses(single)), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_cli_pretrain_train_evaluate_compiled(tmp_path, capsys):
    yaml = pytest.importorskip("yaml")
    from zorro.cli import main
    from zorro.demo import build_avdigits, espeak_available

    if not espeak_available():
        pytest.skip("eSpeak NG is not available")
    data = tmp_path / "data"
    build_avdigits(data, num_train=12, num_test=6, num_frames=4)
    tiny = {
        "model": {"compile": True, "arch": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "num_fusion_tokens": 2,
                                             "audio_patch_size": [16, 8], "video_patch_size": 8, "fbank_num_mel_bins": 32,
                                             "return_token_types": ["AUDIO", "VIDEO", "FUSION", "GLOBAL"]}},
        "data": {"duration": 1.0, "num_frames": 4, "image_size": 32, "batch_size": 6, "num_workers": 0},
        "optim": {"epochs": 1, "warmup_steps": 1}, "run": {"progress": False, "log_every": 1},
    }
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny))
    common = ["--config", str(cfg), "--train-manifest", str(data / "train.csv"), "--eval-manifest", str(data / "test.csv")]
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    assert main(["pretrain", *common, "--out", str(pre)]) == 0
    assert main(["train", *common, "--out", str(ft), "--init-from", str(pre)]) == 0
    assert json.loads((ft / "config.json").read_text())["model"]["compile"] is True
    capsys.readouterr()
    assert main(["evaluate", str(ft), "--manifest", str(data / "test.csv"), "--num-workers", "0", "--output", str(tmp_path / "m.json")]) == 0
    full = json.loads((tmp_path / "m.json").read_text())
    assert full["average"]["top1"] == pytest.approx(json.loads((ft / "eval_metrics.json").read_text())["average"]["top1"])
