"""The ``zorro`` command line on a tiny AV-digits build, and the demo's smoke run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from zorro.cli import build_parser, main
from zorro.cli.train_cmd import parse_overrides
from zorro.demo import build_avdigits, espeak_available

pytestmark = pytest.mark.skipif(not espeak_available(), reason="eSpeak NG is not available")

TINY = {
    "model": {"arch": {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16, "num_fusion_tokens": 2, "audio_patch_size": [16, 8],
                       "video_patch_size": 8, "fbank_num_mel_bins": 32, "return_token_types": ["AUDIO", "VIDEO", "FUSION", "GLOBAL"],
                       "spec_aug_freq_mask": 4, "spec_aug_time_mask": 4, "spec_aug_stretch_factor": 1.0}},
    "data": {"duration": 1.0, "num_frames": 4, "image_size": 32, "batch_size": 8, "num_workers": 0},
    "optim": {"epochs": 1, "warmup_steps": 1}, "run": {"progress": False, "log_every": 1},
}


@pytest.fixture(scope="module")
def avdigits(tmp_path_factory):
    root = tmp_path_factory.mktemp("avdigits")
    build_avdigits(root, num_train=20, num_test=10, num_frames=4)
    return root


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"pretrain", "train", "evaluate", "embed", "demo", "audio-stats"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: zorro " + name in capsys.readouterr().out


def test_overrides_parse_nested_yaml_values():
    assert parse_overrides(["lr=3e-4", "model.depth=4", "model.return_token_types=[AUDIO, VIDEO]", "init_from=null"]) == {
        "lr": 3e-4, "model": {"depth": 4, "return_token_types": ["AUDIO", "VIDEO"]}, "init_from": None,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["lr"])


def test_pretrain_train_evaluate_embed_from_the_command_line(avdigits, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    common = ["--config", str(cfg), "--train-manifest", str(avdigits / "train.csv"), "--eval-manifest", str(avdigits / "test.csv")]
    assert main(["pretrain", *common, "--out", str(pre)]) == 0
    assert (pre / "model" / "model.safetensors").exists() and (pre / "eval_metrics.json").exists()
    assert main(["train", *common, "--out", str(ft), "--init-from", str(pre), "--set", "optim.lr=0.002"]) == 0
    saved = json.loads((ft / "config.json").read_text())
    assert saved["optim"]["lr"] == 0.002 and saved["model"]["init_from"] == str(pre) and saved["task"] == "supervised"
    assert json.loads((ft / "labels.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(ft), "--manifest", str(avdigits / "test.csv"), "--num-workers", "0", "--output", str(tmp_path / "m.json")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {"audio", "video", "fusion", "global", "average", "audio_only", "video_only"} <= set(shown)
    full = json.loads((tmp_path / "m.json").read_text())
    assert full["average"]["top1"] == pytest.approx(json.loads((ft / "eval_metrics.json").read_text())["average"]["top1"])
    out = tmp_path / "emb.safetensors"
    assert main(["embed", str(ft), "--manifest", str(avdigits / "test.csv"), "--output", str(out), "--duration", "1",
                 "--num-frames", "4", "--image-size", "32", "--num-workers", "0"]) == 0
    from safetensors.torch import load_file

    tensors = load_file(str(out))
    index = json.loads(out.with_suffix(".index.json").read_text())
    assert set(tensors) == {"audio", "video", "fusion", "global"} and tensors["audio"].shape == (10, 32) and len(index) == 10


def test_errors_are_reported_not_raised(tmp_path, caplog):
    assert main(["train", "--out", str(tmp_path)]) == 1
    assert "no training data" in caplog.text
    assert main(["evaluate", str(tmp_path), "--manifest", "nope.csv"]) == 1


def test_flat_config_keys_are_reported_with_their_section(tmp_path, caplog):
    flat = tmp_path / "flat.yaml"
    flat.write_text("lr: 3.0e-4\n")
    assert main(["train", "--config", str(flat), "--out", str(tmp_path / "a")]) == 1
    assert "'lr' moved to 'optim.lr'" in caplog.text
    assert main(["train", "--set", "batch_size=4", "--out", str(tmp_path / "b")]) == 1
    assert "'batch_size' moved to 'data.batch_size'" in caplog.text
    assert main(["train", "--set", "model.depth=4", "--out", str(tmp_path / "c")]) == 1
    assert "'model.depth' moved to 'model.arch.depth'" in caplog.text


def test_audio_stats(avdigits, capsys):
    assert main(["audio-stats", "--manifest", str(avdigits / "train.csv"), "--duration", "1", "--num-workers", "0"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["files"] == 20 and stats["unreadable"] == 0 and stats["audio_std"] > 0


def test_demo_smoke_run(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo"), "--data", str(tmp_path / "data")]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    for name in ("audio", "video", "fusion", "global", "audio_only", "video_only"):
        assert 0.0 <= metrics["test"][name]["top1"] <= 1.0
    assert 0.0 <= metrics["retrieval"]["a2v_r1"] <= 1.0 and 0.0 <= metrics["retrieval"]["v2a_r1"] <= 1.0
    assert metrics["wall_seconds"] > 0
    assert (tmp_path / "demo" / "finetune" / "model" / "config.json").exists()
    assert (tmp_path / "demo" / "confusion.png").exists() and (tmp_path / "demo" / "pretrain" / "loss.png").exists()
    assert "audio_only" in capsys.readouterr().out


def test_trimodal_demo_smoke_run(tmp_path, capsys):
    """--modalities audio,video,text: the captions reach the model (shards store them), the
    table gives all six retrieval directions and text-only top-1; a caption-free model is
    not what was trained."""
    from zorro.recipes.avdigits_demo import check_modalities

    assert main(["demo", "--quick", "--modalities", "audio,video,text", "--out", str(tmp_path / "demo"),
                 "--data", str(tmp_path / "data")]) == 0
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["modalities"] == ["audio", "video", "text"]
    for name in ("text", "audio_only", "video_only", "text_only"):
        assert 0.0 <= metrics["test"][name]["top1"] <= 1.0
    for pair in ("a2v", "a2t", "v2a", "v2t", "t2a", "t2v"):
        assert 0.0 <= metrics["retrieval"][f"{pair}_r1"] <= metrics["retrieval"][f"{pair}_r5"] <= 1.0
    config = json.loads((tmp_path / "demo" / "finetune" / "model" / "config.json").read_text())["config"]
    assert list(config["modalities"]) == ["audio", "video", "text"] and config["modalities"]["text"]["kind"] == "text"
    shard_info = [json.loads(p.read_text()) for p in (tmp_path / "data").glob("shards-*/train/dataset.json")]
    assert [i["settings"].get("modalities") for i in shard_info] == [{"text": "text"}]
    out = capsys.readouterr().out
    assert "text -> video" in out and "text_only" in out and "audio_only" in out
    assert main(["demo", "--quick", "--modalities", "audio,text", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "data")]) == 1
    with pytest.raises(ValueError, match="audio,video,text"):
        check_modalities("audio,text")
    assert check_modalities(["text", "video", "audio"]) == ("audio", "video", "text")


def test_demo_feature_cache_follows_model_frontend(tmp_path, caplog):
    # The demo caches front-end features (and takes the normalisation statistics from them)
    # with a front-end built from the model settings; a non-default analysis geometry must
    # still be computed once, not once by the recipe and again by a trainer whose model
    # front-end differs from the recipe's.
    from zorro.recipes.avdigits_demo import run_demo

    caplog.set_level(logging.INFO, logger="zorro.train")
    caplog.set_level(logging.INFO, logger="zorro.recipes.avdigits_demo")  # where the shard path computes them
    run_demo(out_dir=tmp_path / "demo", data_dir=tmp_path / "data", quick=True,
             config_overrides={"model": {"fbank_frame_shift": 20.0, "fbank_num_mel_bins": 32}})
    computed = [r for r in caplog.records if "front-end features of" in r.getMessage()]
    assert len(computed) == 1, [r.getMessage() for r in computed]
