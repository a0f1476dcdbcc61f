"""Every shipped dataset config loads, validates, and its geometry runs through a (shrunk) model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zorro.cli.train_cmd import load_config
from zorro.model import Zorro, ZorroConfig
from zorro.train.config import TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*/*.yaml"))


def test_the_recipes_ship_their_configs():
    names = {f"{p.parent.name}/{p.name}" for p in CONFIGS}
    for dataset in ("audioset", "vggsound", "kinetics_sounds"):
        assert {f"{dataset}/pretrain.yaml", f"{dataset}/finetune.yaml"} <= names
    assert "esc50/finetune.yaml" in names  # audio only: no audio-visual pre-training on ESC-50
    assert "urbansound8k/finetune.yaml" in names  # audio only as well


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_and_validates(path):
    cfg = TrainConfig.from_dict(load_config(str(path), []))
    arch = ZorroConfig(**cfg.model.arch)
    assert (arch.dim, arch.depth, arch.heads) == (768, 12, 12)  # ViT-B sized
    assert arch.audio_frontend == "fbank" and arch.sample_rate == cfg.data.sample_rate == 16000
    assert (arch.fbank_num_mel_bins, arch.fbank_frame_length, arch.fbank_frame_shift) == (128, 25.0, 10.0)
    assert arch.audio_mean is not None and arch.audio_std is not None
    assert cfg.data.train_shards and cfg.data.eval_shards
    from zorro.data import registry

    assert cfg.data.duration == registry.get(path.parent.name.replace("_", "-")).duration  # the dataset's stored window
    if cfg.task == "supervised":
        assert cfg.data.eval_protocol == path.parent.name.replace("_", "-")
    if path.parent.name == "audioset":
        assert cfg.data.multi_label
        if cfg.task == "supervised":
            assert cfg.data.balanced_sampling and cfg.objective.mixup_alpha > 0
    # --set overrides reach the sections
    over = TrainConfig.from_dict(load_config(str(path), ["optim.lr=1e-3", "data.batch_size=4"]))
    assert (over.optim.lr, over.data.batch_size) == (1e-3, 4)


@pytest.mark.filterwarnings("ignore:audio features of shape")  # 998 fbank frames cropped to 992 (whole patches), expected
@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name == "finetune.yaml"], ids=lambda p: p.parent.name)
def test_config_geometry_runs_through_a_shrunk_model(path):
    """The config's clip length, front-end and patch sizes, with width/depth shrunk so it is fast."""
    cfg = TrainConfig.from_dict(load_config(str(path), []))
    arch = {**cfg.model.arch, "dim": 32, "depth": 1, "heads": 2, "dim_head": 16}
    model = Zorro(**arch).eval()
    d = cfg.data
    audio = torch.randn(1, int(d.duration * d.sample_rate)) * 0.1
    video = None if path.parent.name == "esc50" else torch.randn(1, 3, d.num_frames, d.image_size, d.image_size)
    with torch.no_grad():
        out = model.encode(audio=audio, video=video)
    assert all(torch.isfinite(e).all() for e in out.embeddings.values())


def test_recipe_config_keys_are_checked():
    with pytest.raises(ValueError, match="eval_protocol must be one of"):
        TrainConfig.from_dict({"data": {"eval_protocol": "imagenet"}})
    with pytest.raises(ValueError, match="samples_per_epoch applies to balanced sampling"):
        TrainConfig.from_dict({"data": {"samples_per_epoch": 100}})
    with pytest.raises(ValueError, match="samples_per_epoch must be an integer >= 1"):
        TrainConfig.from_dict({"data": {"balanced_sampling": True, "samples_per_epoch": 0}})
    with pytest.raises(TypeError, match="balanced_sampling must be true or false"):
        TrainConfig.from_dict({"data": {"balanced_sampling": "yes"}})
