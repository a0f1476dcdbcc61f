"""The trainer: learning, DDP equivalence, exact resume after SIGKILL, failure handling."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from toy import TINY_MODEL, ToyAV, ddp_worker, tiny_config, toy_vocab
from zorro.model import Zorro
from zorro.train import NonFiniteLossError, TrainConfig, param_groups, train, warmup_cosine

TESTS = Path(__file__).parent


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return Zorro.from_pretrained(str(folder)).state_dict()


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]


def test_supervised_learns_and_writes_the_run_folder(tmp_path):
    metrics = train(tiny_config(tmp_path, optim={"epochs": 4}), ToyAV(missing_audio_every=5), ToyAV(n=32, seed=1), toy_vocab())
    losses = _losses(tmp_path)
    assert losses[-1] < losses[0] * 0.8
    assert metrics["audio"]["top1"] > 0.5 and metrics["video"]["top1"] > 0.5  # 4 classes: chance is 0.25
    assert metrics["audio_only"]["top1"] == pytest.approx(metrics["audio"]["top1"])  # purity, end to end
    for name in ("config.json", "labels.json", "log.jsonl", "loss.png", "heads.safetensors", "eval_metrics.json", "model/config.json"):
        assert (tmp_path / name).exists(), name


def test_pretrain_runs_and_reports_retrieval(tmp_path):
    metrics = train(tiny_config(tmp_path, task="pretrain", optim={"epochs": 2}), ToyAV(), ToyAV(n=32, seed=1), toy_vocab())
    assert {"a2v_r1", "v2a_r1", "instance_a2v_r1"} <= set(metrics)
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    parts = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])["parts"]
    assert {"audio_video", "fusion", "global"} <= set(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["supervised", "pretrain"])
def test_ddp_two_processes_equal_one_process(tmp_path, task):
    # lr 1e-4: Adam turns a gradient element far below eps (1e-8) into an update of
    # lr * g / eps, so fp32 rounding differences of ~1e-11 between a 1-process and a
    # 2-process gradient become lr * 1e3 in the weights; at lr 3e-3 that reached 1e-5.
    steps = dict(task=task, optim={"max_steps": 3, "epochs": 1, "lr": 1e-4}, run={"ckpt_every": 0})
    single = tmp_path / "single"
    train(tiny_config(single, data={"batch_size": 8}, **steps), ToyAV(), None, toy_vocab())
    ddp = tmp_path / "ddp"
    mp.spawn(ddp_worker, args=(2, _free_port(), str(ddp), dict(data={"batch_size": 4}, **steps)), nprocs=2, join=True)
    a, b = _weights(single / "model"), _weights(ddp / "model")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)
    torch.testing.assert_close(torch.tensor(_losses(single)), torch.tensor(_losses(ddp)), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra",
    [{}, {"task": "pretrain", "objective": {"intra_weight": 0.5}},
     {"task": "pretrain", "objective": {"intra_weight": 0.5, "augment": {"audio_domain": "fbank"}}}],
    ids=["supervised", "pretrain_two_view", "pretrain_fbank_domain"],
)
def test_resume_after_sigkill_is_exact(tmp_path, extra):
    overrides = dict(optim={"epochs": 3}, run={"ckpt_every": 2}, **extra)
    reference = tmp_path / "reference"
    train(tiny_config(reference, **overrides), ToyAV(), None, toy_vocab())

    killed = tmp_path / "killed"
    code = (
        "import sys; sys.path.insert(0, %r); from toy import run_in_subprocess; "
        "run_in_subprocess(%r, %r, 0.02)" % (str(TESTS), str(killed), overrides)
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and not (killed / "checkpoints" / "ckpt-000006").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model").exists()
    train(tiny_config(killed, **overrides), ToyAV(), None, toy_vocab())  # resumes from the latest checkpoint
    a, b = _weights(reference / "model"), _weights(killed / "model")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _losses(reference) == _losses(killed)


def test_non_finite_loss_stops_with_a_checkpoint(tmp_path):
    data = ToyAV(nan_from=0)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        train(tiny_config(tmp_path), data, None, toy_vocab())
    assert (tmp_path / "checkpoints" / "latest").exists()


def test_param_groups_skip_decay_on_norms_biases_tokens():
    model = Zorro(**TINY_MODEL)
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"fusion_tokens", "return_tokens", "norm.weight", "audio_embed.proj.bias"} <= no_decay_names
    assert all(p.ndim == 2 for p in decay["params"]) and no_decay["weight_decay"] == 0.0


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, warmup=10, total=100, min_ratio=0.0) == pytest.approx(0.1)
    assert warmup_cosine(9, warmup=10, total=100, min_ratio=0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, warmup=10, total=100, min_ratio=0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, warmup=10, total=100, min_ratio=0.1) == pytest.approx(0.1)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"optim": {"lrr": 1.0}})
    with pytest.raises(ValueError, match="task"):
        TrainConfig(task="distill")
    with pytest.raises(ValueError, match="no training data"):
        train(TrainConfig(run={"out_dir": "/tmp/unused"}))


def test_numbers_written_as_yaml_text_are_accepted():
    import yaml

    cfg = TrainConfig.from_dict(yaml.safe_load("optim:\n  lr: 3e-4\n  weight_decay: 1e-2\n"))
    assert cfg.optim.lr == 3e-4 and cfg.optim.weight_decay == 1e-2
    with pytest.raises(ValueError, match="lr must be a number"):
        TrainConfig(optim={"lr": "fast"})


def test_two_view_pretraining_runs_and_logs_its_terms(tmp_path):
    metrics = train(tiny_config(tmp_path, task="pretrain", optim={"epochs": 1}, objective={"intra_weight": 0.5}), ToyAV(), ToyAV(n=32, seed=1), toy_vocab())
    assert {"a2v_r1", "v2a_r1"} <= set(metrics)
    parts = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])["parts"]
    assert {"audio_video", "audio_audio", "video_video", "temperature"} <= set(parts)


def test_precision_auto_picks_bf16_only_where_it_is_native(monkeypatch):
    import warnings

    import zorro.train.precision as zt

    monkeypatch.setattr(zt, "native_bf16", lambda device="cpu": False)
    assert zt.resolve_precision("auto") == "fp32"
    assert zt.resolve_precision("fp32") == "fp32"
    with pytest.warns(UserWarning, match="without native bf16"):
        assert zt.resolve_precision("bf16") == "bf16"  # an explicit choice is kept, with a warning
    monkeypatch.setattr(zt, "native_bf16", lambda device="cpu": True)
    assert zt.resolve_precision("auto") == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zt.resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        zt.resolve_precision("fp16")
    assert TrainConfig().model.precision == "auto"


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    import zorro.train as zt

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert zt.native_bf16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert zt.native_bf16("cpu") is True


def test_supervised_augments_training_batches_only_when_asked():
    from zorro.augment import ClipAugment
    from zorro.data import collate_clips
    from zorro.tasks import ZorroClassifier
    from zorro.train import SupervisedObjective, build_task

    class Spy(ClipAugment):
        calls = 0

        def audio(self, audio):
            Spy.calls += 1
            return audio * 0  # a change the loss must see

        def video(self, video):
            Spy.calls += 1
            return video

    torch.manual_seed(0)
    toy = ToyAV(n=4)
    batch = collate_clips([toy[i] for i in range(4)])
    task = ZorroClassifier(Zorro(**TINY_MODEL), 4)
    plain = SupervisedObjective(task, multi_label=False, label_smoothing=0.0, mixup_alpha=0.0)
    spied = SupervisedObjective(task, multi_label=False, label_smoothing=0.0, mixup_alpha=0.0, augment=Spy())
    plain.train(), spied.train()
    assert not torch.equal(plain(batch)[0], spied(batch)[0]) and Spy.calls == 2
    plain.eval(), spied.eval()
    assert torch.equal(plain(batch)[0], spied(batch)[0]) and Spy.calls == 2  # evaluation never augments
    assert build_task(TrainConfig(task="supervised", model={"arch": TINY_MODEL}), Zorro(**TINY_MODEL), 3).augment is None
    cfg = TrainConfig(task="supervised", model={"arch": TINY_MODEL}, objective={"augment": {"zoom": [0.8, 1.2]}})
    assert build_task(cfg, Zorro(**TINY_MODEL), 3).augment.zoom == (0.8, 1.2)


def test_trainer_resolves_auto_precision_without_changing_the_callers_config(tmp_path, monkeypatch):
    import zorro.train as zt
    import zorro.train.precision

    monkeypatch.setattr(zorro.train.precision, "native_bf16", lambda device="cpu": False)
    cfg = tiny_config(tmp_path, model={"precision": "auto"})
    trainer = zt.Trainer(cfg, ToyAV(n=16), ToyAV(n=8, seed=1), toy_vocab())
    assert trainer.cfg.model.precision == "fp32"
    assert cfg.model.precision == "auto"


def test_cached_features_feed_training_with_the_same_losses():
    from zorro.data import collate_clips, split_by_modality
    from zorro.tasks import ZorroClassifier
    from zorro.train import CachedClips, SupervisedObjective

    toy = ToyAV(n=12, missing_audio_every=4)
    cached = CachedClips(toy)
    model = Zorro(**TINY_MODEL)
    cached.add_audio_features(model.audio_frontend)
    assert cached.audio_features_key == model.audio_frontend.analysis_key()
    with_audio = [it for it in cached.items if it["audio"] is not None]
    assert all(torch.equal(it["audio_features"], model.audio_frontend.features(it["audio"][None])[0]) for it in with_audio)
    assert all("audio_features" not in it for it in cached.items if it["audio"] is None)
    batch = collate_clips([cached[i] for i in range(8)])
    assert batch["audio_features"].shape == (8, 32, 23)
    groups = list(split_by_modality(batch))
    assert groups[-1]["audio"] is None and groups[-1]["audio_features"] is None  # the video-only group
    with pytest.raises(TypeError, match="AudioFrontend"):
        cached.add_audio_features(model)  # the model, not its front-end
    plain = collate_clips([toy[i] for i in range(8)])
    assert plain["audio_features"] is None
    objective = SupervisedObjective(ZorroClassifier(model, 4), multi_label=False, label_smoothing=0.0, mixup_alpha=0.0).train()
    assert objective.uses_audio_features
    torch.testing.assert_close(objective(batch)[0], objective(plain)[0], atol=1e-6, rtol=0)


def test_fbank_domain_pretraining_caches_features_and_learns(tmp_path):
    from zorro.train import CachedClips

    data = CachedClips(ToyAV())
    cfg = tiny_config(tmp_path, task="pretrain", optim={"epochs": 2},
                      objective={"intra_weight": 0.5, "cross_view": True, "augment": {"audio_domain": "fbank", "speed": [0.8, 1.25]}})
    metrics = train(cfg, data, ToyAV(n=32, seed=1), toy_vocab())
    assert data.audio_features_key is not None and "audio_features" in data[0]
    assert {"a2v_r1", "v2a_r1"} <= set(metrics)
    losses = _losses(tmp_path)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_flat_keys_name_the_section_they_moved_to():
    import yaml

    from zorro.train import sectioned

    for flat, moved in [({"lr": 1e-3}, "'lr' moved to 'optim.lr'"), ({"batch_size": 4}, "'batch_size' moved to 'data.batch_size'"),
                        ({"init_from": "x"}, "'init_from' moved to 'model.init_from'"), ({"seed": 1}, "'seed' moved to 'run.seed'"),
                        ({"mixup_alpha": 0.2}, "'mixup_alpha' moved to 'objective.mixup_alpha'"),
                        ({"model": {"depth": 4}}, "'model.depth' moved to 'model.arch.depth'"),
                        ({"optim": {"proj_dim": 4}}, "'optim.proj_dim' moved to 'objective.proj_dim'")]:
        with pytest.raises(ValueError, match=moved.replace(".", r"\.")):
            TrainConfig.from_dict(flat)
    with pytest.raises(ValueError, match="'epochs' moved to 'optim.epochs'"):
        TrainConfig.from_dict(yaml.safe_load("task: pretrain\nepochs: 3\n"))
    with pytest.raises(ValueError, match="unknown training config keys.*'optim.lrr'"):
        TrainConfig.from_dict({"optim": {"lrr": 1.0}})
    with pytest.raises(ValueError, match="unknown model.arch keys"):
        TrainConfig(model={"arch": {"dim": 32, "depht": 2}})
    # A run folder written with the flat layout still reads, through sectioned().
    old = {"task": "pretrain", "model": {"dim": 32, "depth": 1}, "lr": 2e-3, "batch_size": 4, "seed": 5, "init_from": None}
    cfg = TrainConfig.from_dict(sectioned(old))
    assert (cfg.model.arch, cfg.optim.lr, cfg.data.batch_size, cfg.run.seed) == ({"dim": 32, "depth": 1}, 2e-3, 4, 5)


def test_config_round_trips_through_its_dict_and_has_the_shard_keys():
    cfg = TrainConfig(task="pretrain", model={"arch": {"dim": 32, "depth": 1}}, data={"train_shards": "out/train"},
                      optim={"lr": 2e-3}, objective={"augment": {"zoom": [0.9, 1.1]}}, run={"seed": 3})
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.data.train_shards == "out/train" and again.data.eval_shards is None
    assert set(cfg.to_dict()) == {"task", "model", "data", "optim", "objective", "run"}
    with pytest.raises(TypeError, match="optim must be a mapping of its keys"):
        TrainConfig(optim=3)
