"""Cross-validation argument errors (the five-fold run itself: tests/test_recipes_cli.py)."""

from __future__ import annotations

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
