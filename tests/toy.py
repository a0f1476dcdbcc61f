"""A synthetic in-memory audio-visual dataset for training tests (no files, no decoding)."""

from __future__ import annotations

import math
import time

import torch
from torch.utils.data import Dataset


class ToyAV(Dataset):
    """``n`` clips of ``num_classes`` classes: a class-specific tone and a class-specific
    moving bar. Items are dicts as :class:`zorro.data.ClipDataset` yields them.

    ``delay`` (s) sleeps in ``__getitem__`` to slow a run down (for kill tests);
    ``missing_audio_every`` drops the audio of every k-th clip; ``nan_from`` puts NaN in
    the video of items with index >= that value.
    """

    def __init__(self, n=64, num_classes=4, samples=4000, frames=4, size=16, seed=0, delay=0.0,
                 missing_audio_every=0, nan_from=None):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        t = torch.arange(samples) / 16000
        for i in range(n):
            c = i % num_classes
            audio = 0.5 * torch.sin(2 * math.pi * (300 + 200 * c) * t) + 0.05 * torch.randn(samples, generator=g)
            video = 0.1 * torch.randn(3, frames, size, size, generator=g)
            video[:, :, :, (c * 3) % size] += 1.0
            if nan_from is not None and i >= nan_from:
                video[:] = float("nan")
            if missing_audio_every and i % missing_audio_every == 0:
                audio = None
            self.items.append({"audio": audio, "video": video, "label": c, "index": i, "path": f"toy/{i}"})
        self.delay = delay

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return self.items[i]


TINY_MODEL = dict(
    dim=32, depth=2, heads=2, dim_head=16, num_fusion_tokens=4, audio_patch_size=8, video_patch_size=8,
    fbank_num_mel_bins=32, return_token_types=["AUDIO", "VIDEO", "FUSION", "GLOBAL"],
    spec_aug_freq_mask=0, spec_aug_time_mask=0, spec_aug_stretch_factor=1.0,
)


def tiny_config(out_dir, task="supervised", **sections):
    """A TrainConfig for the toy data that runs in about a second; ``sections`` update the
    keys of a section, e.g. ``tiny_config(out, optim={"epochs": 4})``."""
    from zorro.train import TrainConfig

    config = {"model": {"arch": dict(TINY_MODEL), "precision": "fp32"}, "data": {"batch_size": 8, "num_workers": 0},
              "optim": {"epochs": 2, "lr": 3e-3, "warmup_steps": 2},
              "run": {"out_dir": str(out_dir), "progress": False, "log_every": 1, "resume": True}}
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    return TrainConfig.from_dict({"task": task, **config})


def toy_vocab(num_classes=4):
    """Label vocabulary matching :class:`ToyAV`."""
    from zorro.data import LabelVocab

    return LabelVocab([f"class{c}" for c in range(num_classes)])


def ddp_worker(rank, world_size, port, out_dir, cfg_overrides):
    """Entry point of one spawned DDP process: train the toy task under gloo."""
    import os

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    import torch.distributed as dist

    from zorro.train import train

    try:
        train(tiny_config(out_dir, **cfg_overrides), ToyAV(), None, toy_vocab())
    finally:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def run_in_subprocess(out_dir, cfg_overrides, delay):
    """Entry point for kill/resume tests: train the toy task in this (child) process."""
    from zorro.train import train

    train(tiny_config(out_dir, **cfg_overrides), ToyAV(delay=delay), None, toy_vocab())
