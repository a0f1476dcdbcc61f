"""Training with the recipes' switches: AudioSet balanced sampling (exact resume) and the
end-of-run dataset protocol, on tiny prepared shards."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from toy import tiny_config

LABELS = ["common", "rare", "rarest"]


def _shards(folder, n=24):
    from zorro.data.shards.writer import SampleData, write_samples

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    samples = []
    for k in range(n):
        labels = ("common",) if k % 8 else (("common", "rare") if k % 16 else ("rarest",))
        tone = 300 + 300 * LABELS.index(labels[-1])
        audio = (0.5 * np.sin(2 * np.pi * tone * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
        frames = rng.integers(0, 255, size=(4, 16, 16, 3), dtype=np.uint8)
        samples.append(SampleData(labels=labels, audio=audio, frames=frames, start=0.0, end=0.25, path=f"clip{k}.mp4"))
    write_samples(folder, samples, labels=LABELS, multi_label=True, samples_per_shard=8, sample_rate=16000)


def _datasets(folder):
    from zorro.data.shards.reader import ShardDataset

    train_set = ShardDataset(folder, train=True, image_size=16, jpeg_decoder="pillow")
    eval_set = ShardDataset(folder, train=False, image_size=16, jpeg_decoder="pillow")
    return train_set, eval_set


def _config(out):
    return tiny_config(out, data={"multi_label": True, "balanced_sampling": True, "samples_per_epoch": 16, "eval_protocol": "audioset"},
                       optim={"epochs": 2}, run={"ckpt_every": 1, "keep_checkpoints": 20, "tensorboard": False}, objective={"label_smoothing": 0.0})


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:audio features of shape")  # 23 fbank frames cropped to 16 (whole patches)
def test_balanced_sampling_resumes_exactly_and_reports_the_audioset_protocol(tmp_path):
    from zorro.data import LabelVocab
    from zorro.data.balanced import BalancedSampler
    from zorro.train import Trainer

    _shards(tmp_path / "shards")
    vocab = LabelVocab(LABELS)
    trainer = Trainer(_config(tmp_path / "ref"), *_datasets(tmp_path / "shards"), vocab)
    assert isinstance(trainer.sampler, BalancedSampler) and trainer.steps_per_epoch == 2  # 16 draws / batch 8
    metrics = trainer.fit()
    proto = metrics["protocol"]
    assert proto["protocol"] == "audioset" and proto["num_files"] == 24
    assert proto["num_classes_excluded"] == 0 and 0.0 <= proto["mAP"] <= 1.0 and "d_prime" in proto
    # drawn clips: the rarest class (3 of 24 clips) makes up about a third of the draws, not an eighth
    draws = np.concatenate([trainer.sampler.rank_indices(epoch=e) for e in range(2)])
    rarest = np.mean([k % 16 == 0 for k in draws])
    assert rarest > 0.2

    # resume mid-epoch from step 1 of 4: same weights as the uninterrupted run
    shutil.copytree(tmp_path / "ref", tmp_path / "resumed")
    ckpts = tmp_path / "resumed" / "checkpoints"
    for ckpt in ckpts.glob("ckpt-*"):
        if int(ckpt.name.split("-")[-1]) > 1:
            shutil.rmtree(ckpt)
    (ckpts / "latest").write_text("ckpt-000001\n")
    shutil.rmtree(tmp_path / "resumed" / "model")
    Trainer(_config(tmp_path / "resumed"), *_datasets(tmp_path / "shards"), vocab).fit()
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
