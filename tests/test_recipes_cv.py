"""ESC-50's five-fold protocol on tiny audio-only shards: one run per fold, mean and std."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toy import tiny_config

pytestmark = pytest.mark.filterwarnings("ignore:audio features of shape")  # short clips cropped to whole patches


def _esc50_like_shards(folder, per_class=2):
    from zorro.data.shards.writer import SampleData, write_samples

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    samples = []
    for fold in range(1, 6):
        for c, name in enumerate(("dog", "rain")):
            for j in range(per_class):
                audio = (0.5 * np.sin(2 * np.pi * (400 + 800 * c) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
                samples.append(SampleData(labels=(name,), audio=audio, start=0.0, end=0.25, path=f"{fold}-{c}{j}-A-{c}.wav",
                                          meta={"fold": fold, "id": f"{fold}-{c}{j}-A-{c}.wav"}))
    write_samples(folder, samples, labels=["dog", "rain"], samples_per_shard=8, sample_rate=16000)


@pytest.mark.slow
def test_five_folds_one_command(tmp_path):
    from zorro.recipes.cross_validation import run_cross_validation

    _esc50_like_shards(tmp_path / "shards")
    cfg = tiny_config(tmp_path / "cv", data={"train_shards": str(tmp_path / "shards"), "duration": 0.25, "eval_protocol": "esc50"},
                      optim={"epochs": 1})
    result = run_cross_validation(cfg)
    assert result["protocol"] == "esc50" and result["metric"] == "top1"
    assert sorted(result["per_fold"]) == ["1", "2", "3", "4", "5"]
    assert all(v == {"train": 16, "eval": 4} for v in result["samples"].values())  # each fold held out once
    s = result["summary"]
    accs = [result["per_fold"][str(k)]["top1"] for k in range(1, 6)]
    assert s["folds"] == accs and s["num_folds"] == 5
    assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs, ddof=1))
    assert all(result["per_fold"][str(k)]["num_files"] == 4 for k in range(1, 6))
    saved = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert saved["summary"] == s
    for k in range(1, 6):
        assert (tmp_path / "cv" / f"fold{k}" / "model" / "config.json").exists()
    # a second call reuses the finished folds instead of training again
    mtime = (tmp_path / "cv" / "fold3" / "model" / "model.safetensors").stat().st_mtime_ns
    again = run_cross_validation(cfg)
    assert again["summary"] == s
    assert (tmp_path / "cv" / "fold3" / "model" / "model.safetensors").stat().st_mtime_ns == mtime


def test_cross_validation_errors(tmp_path):
    from zorro.recipes.cross_validation import run_cross_validation

    _esc50_like_shards(tmp_path / "shards", per_class=1)
    cfg = tiny_config(tmp_path / "cv", data={"train_shards": str(tmp_path / "shards")})
    with pytest.raises(ValueError, match=r"no sample has fold in \[7\]"):
        run_cross_validation(cfg, folds=[7])
    with pytest.raises(ValueError, match=r"carry 0 value\(s\) of 'split'"):
        run_cross_validation(cfg, field="split")
    with pytest.raises(ValueError, match="must be 'supervised'"):
        run_cross_validation(tiny_config(tmp_path / "p", task="pretrain", data={"train_shards": str(tmp_path / "shards")}))
