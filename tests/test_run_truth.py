"""Run folders tell the truth: what a run trained with is what ``config.json`` says, and
``zorro evaluate`` / ``zorro embed`` / ``ZorroClassifier.from_run`` read clips that way.

The key check: the demo's quick setting, evaluated from its run folder on its test split,
reproduces ``metrics.json`` (and ``eval_metrics.json``, cross-entropy included) exactly.
"""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from zorro.cli import main
from zorro.demo import espeak_available

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="eSpeak NG is not available")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One ``zorro demo --quick`` run (about 20 s on two cores), shared by the tests below."""
    if not espeak_available():
        pytest.skip("eSpeak NG is not available")
    root = tmp_path_factory.mktemp("demo")
    old = os.umask(0o022)
    try:
        assert main(["demo", "--quick", "--out", str(root / "out"), "--data", str(root / "data")]) == 0
    finally:
        os.umask(old)
    return root


@needs_espeak
def test_the_demo_run_folder_records_the_settings_it_trained_with(quick_demo):
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS

    metrics = json.loads((quick_demo / "out" / "metrics.json").read_text())
    d = DEMO_SETTINGS["data"]
    for stage in ("pretrain", "finetune"):
        cfg = json.loads((quick_demo / "out" / stage / "config.json").read_text())
        data = cfg["data"]
        # before: data.duration 2.0 and image_size 224 (the defaults), while the demo trained at 1 s and 32 px
        assert (data["duration"], data["num_frames"], data["image_size"], data["sample_rate"]) == (d["duration"], d["num_frames"], d["image_size"], 16000)
        assert data["train_crop"] == "centre"  # the demo's training clips are centred; its views come from augmentation
        assert data["eval_manifest"] == str((quick_demo / "data" / "test.csv").resolve())
        assert data["train_shards"] and os.path.isabs(data["train_shards"]) and data["train_manifest"] is None
        arch = cfg["model"]["arch"]
        assert arch["dim"] == metrics["settings"]["model"]["dim"] and arch["audio_mean"] == pytest.approx(metrics["audio_norm"]["mean"])
        assert arch["sample_rate"] == 16000 and "mask_rule" in arch  # every option of the backbone built
    assert json.loads((quick_demo / "out" / "finetune" / "config.json").read_text())["model"]["init_from"] == str(quick_demo / "out" / "pretrain" / "model")


@needs_espeak
def test_evaluating_the_demo_run_folder_reproduces_its_metrics_exactly(quick_demo, tmp_path, capsys):
    ft = quick_demo / "out" / "finetune"
    demo = json.loads((quick_demo / "out" / "metrics.json").read_text())
    trained = json.loads((ft / "eval_metrics.json").read_text())
    full = tmp_path / "m.json"
    assert main(["evaluate", str(ft), "--manifest", str(quick_demo / "data" / "test.csv"), "--output", str(full)]) == 0
    shown = json.loads(capsys.readouterr().out)
    got = json.loads(full.read_text())
    assert got == trained  # every number, the cross-entropy of every output included, bit for bit
    for name, entry in demo["test"].items():
        assert {k: got[name][k] for k in entry} == entry, name
        assert shown[name]["top1"] == round(entry["top1"], 4)
    # Without --manifest the run's own evaluation data (data.eval_manifest) is used: the same numbers.
    assert main(["evaluate", str(ft), "--report-dir", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "metrics.json").read_text()) == trained
    # The settings the run used to misreport change the result: another image size gives other video logits.
    assert main(["evaluate", str(ft), "--image-size", "64", "--report-dir", str(tmp_path / "other")]) == 0
    other = json.loads((tmp_path / "other" / "metrics.json").read_text())
    assert other["video"]["nll"] != trained["video"]["nll"] and other["audio"] == trained["audio"]


@needs_espeak
def test_overrides_are_logged_against_what_the_run_trained_with(quick_demo, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    ft = quick_demo / "out" / "finetune"
    assert main(["evaluate", str(ft), "--duration", "1.0", "--num-frames", "16", "--report-dir", str(tmp_path / "r")]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "the run trained with" in r.getMessage()]
    assert warned == ["using data.num_frames=16; the run trained with 8"]  # the same duration is not an override


@needs_espeak
def test_evaluation_writes_a_confusion_matrix_and_per_class_accuracy_for_every_output(quick_demo, tmp_path):
    ft = quick_demo / "out" / "finetune"
    labels = json.loads((ft / "labels.json").read_text())["labels"]
    entries = ("audio", "video", "fusion", "global", "average", "audio_only", "video_only")
    for folder in (ft / "confusion", ft / "eval" / "test" / "confusion"):  # the trainer's final evaluation; zorro evaluate's
        for name in entries:
            doc = json.loads((folder / f"{name}.json").read_text())
            assert doc["labels"] == labels and len(doc["confusion"]) == len(labels) == len(doc["per_class_top1"])
            assert sum(doc["support"]) == 30 and (folder / f"{name}.png").stat().st_size > 0
            correct = sum(doc["confusion"][i][i] for i in range(len(labels)))
            assert doc["top1"] == correct / 30
    metrics = json.loads((ft / "eval_metrics.json").read_text())
    assert json.loads((ft / "confusion" / "average.json").read_text())["confusion"] == metrics["average"]["confusion"]


@needs_espeak
def test_classifier_from_run_reads_what_evaluate_reads(quick_demo):
    import torch
    from torch.utils.data import DataLoader

    from zorro.data import collate_clips
    from zorro.evaluate import classifier_metrics, collect_logits
    from zorro.tasks import ZorroClassifier
    from zorro.train.run_folder import load_run, run_dataset

    ft = quick_demo / "out" / "finetune"
    model = ZorroClassifier.from_run(ft)
    assert not model.training and model.labels == json.loads((ft / "labels.json").read_text())["labels"]
    assert model.clip_settings() == {"duration": 1.0, "num_frames": 8, "image_size": 32, "sample_rate": 16000}
    run = load_run(ft)
    loader = DataLoader(run_dataset(run.config, run.vocab), batch_size=run.config.data.eval_batch_size, collate_fn=collate_clips)
    with torch.no_grad():
        got = classifier_metrics(collect_logits(model, loader))
    assert got == json.loads((ft / "eval_metrics.json").read_text())


@needs_espeak
def test_run_files_are_readable_by_others(quick_demo):
    ft = quick_demo / "out" / "finetune"
    for path in (ft / "heads.safetensors", ft / "model" / "model.safetensors", ft / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # heads.safetensors was 0600 (safetensors' own writer)


@needs_espeak
def test_embed_reads_a_run_folder_with_its_settings_and_writes_where_asked(quick_demo, tmp_path, caplog):
    from safetensors.torch import load_file

    ft = quick_demo / "out" / "finetune"
    out = tmp_path / "emb" / "deeper" / "x.safetensors"  # folders that do not exist yet
    old = os.umask(0o022)
    try:
        assert main(["embed", str(ft), "--manifest", str(quick_demo / "data" / "test.csv"), "--output", str(out), "--num-workers", "0"]) == 0
    finally:
        os.umask(old)
    tensors = load_file(str(out))
    index = json.loads((out.parent / "x.index.json").read_text())  # the name --help gives: OUTPUT with .index.json
    assert tensors["audio"].shape == (30, 64) and len(index) == 30
    expected = {row["path"]: row["label"] for row in _csv(quick_demo / "data" / "test.csv")}
    assert all(row["labels"] == [expected[os.path.relpath(row["path"], quick_demo / "data")]] for row in index)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not [r for r in caplog.records if "the run trained with" in r.getMessage()]  # no override: nothing to say


def _csv(path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
