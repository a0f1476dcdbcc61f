"""Shared fixtures: tiny model configurations that run in milliseconds on CPU."""

from __future__ import annotations

import pytest
import torch

from zorro import TokenTypes

ALL_TYPES = (TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION, TokenTypes.GLOBAL)


def tiny_kwargs(**overrides):
    """Constructor arguments of a small model (dim 32, 2 layers) with all four outputs."""
    kwargs = dict(
        dim=32,
        depth=2,
        heads=2,
        dim_head=16,
        num_fusion_tokens=4,
        audio_patch_size=8,
        video_patch_size=8,
        video_temporal_patch_size=2,
        fbank_num_mel_bins=32,
        return_token_types=ALL_TYPES,
        spec_aug_freq_mask=0,
        spec_aug_time_mask=0,
        spec_aug_stretch_factor=1.0,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_crop_warnings():
    """The patch-crop warning is said once per process; each test starts as a fresh run."""
    from zorro.audio_crop import reset_audio_crop_warnings

    reset_audio_crop_warnings()
    yield
