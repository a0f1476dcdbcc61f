"""Seed compatibility: zorro-pytorch weights load and reproduce the (fixed) seed function."""

from __future__ import annotations

import pytest
import torch

from zorro import Zorro, TokenTypes
from zorro.reference import DenseZorro

SEED_KW = dict(dim=48, depth=2, heads=3, dim_head=16, num_fusion_tokens=5)


def seed_model(**kw):
    ref = DenseZorro(**{**SEED_KW, **kw}).eval()
    with torch.no_grad():  # make every gain and bias non-trivial so the test can fail
        for name, p in ref.named_parameters():
            if name.endswith(("gamma", "weight")) and p.dim() == 1:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return ref


def test_seed_state_dict_layout_matches_spec():
    sd = DenseZorro(dim=512, depth=2).state_dict()
    expected = {
        "return_tokens": (3, 512), "fusion_tokens": (16, 512),
        "attn_pool.norm.gamma": (512,), "attn_pool.norm.beta": (512,),
        "attn_pool.to_q.weight": (512, 512), "attn_pool.to_kv.weight": (1024, 512), "attn_pool.to_out.weight": (512, 512),
        "spec.window": (24,),
        "audio_to_tokens.1.weight": (256,), "audio_to_tokens.2.weight": (512, 256), "audio_to_tokens.3.weight": (512,),
        "video_to_tokens.1.weight": (1536,), "video_to_tokens.2.weight": (512, 1536), "video_to_tokens.3.weight": (512,),
        "layers.1.0.to_kv.weight": (1024, 512), "layers.1.1.1.weight": (2730, 512), "layers.1.1.3.weight": (512, 1365),
        "norm.gamma": (512,), "norm.beta": (512,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize("samples,frames,size", [(8000, 4, 32), (5000, 2, 48)])
def test_parity_with_dense_reference(samples, frames, size):
    ref = seed_model()
    model = Zorro.from_zorro_pytorch(ref.state_dict(), heads=3, dim_head=16).eval()
    assert model.config.audio_frontend == "spectrogram" and model.config.pos_embed == "none"
    a, v = torch.randn(2, samples), torch.randn(2, 3, frames, size, size)
    with torch.no_grad(), pytest.warns(UserWarning, match="cropped"):
        expected = ref(audio=a, video=v)
        got = model(audio=a, video=v)
    err = (got - expected).abs().max().item()
    assert err <= 1e-4, err
    with torch.no_grad():
        got_eager = model.set_attn_backend("eager")(audio=a, video=v)
    assert (got_eager - expected).abs().max() <= 1e-4


def test_seed_pool_bug_leaks_and_ours_does_not():
    ref_bug = seed_model(pool_rule="seed")
    ref_fixed = seed_model()
    ref_fixed.load_state_dict(ref_bug.state_dict())
    a, v = torch.randn(2, 8000), torch.randn(2, 3, 4, 32, 32)
    v2 = torch.randn_like(v)
    with torch.no_grad():
        leak = (ref_bug(audio=a, video=v)[:, 0] - ref_bug(audio=a, video=v2)[:, 0]).abs().max()
        fixed = (ref_fixed(audio=a, video=v)[:, 0] - ref_fixed(audio=a, video=v2)[:, 0]).abs().max()
    assert leak > 1e-3  # the seed's "audio" output moves with the video
    assert fixed <= 1e-6


def test_conversion_errors_are_clear():
    sd = seed_model().state_dict()
    with pytest.raises(ValueError, match="dim=64 was given but the weights have dim=48"):
        Zorro.from_zorro_pytorch(sd, dim=64, heads=3, dim_head=16)
    with pytest.raises(ValueError, match="do not fit"):
        Zorro.from_zorro_pytorch(sd, heads=4, dim_head=16)
    with pytest.raises(ValueError, match="return tokens"):
        Zorro.from_zorro_pytorch(sd, heads=3, dim_head=16, return_token_types=(TokenTypes.AUDIO,))
    with pytest.raises(TypeError, match="seed's constructor arguments"):
        Zorro.from_zorro_pytorch(sd, heads=3, dim_head=16, pos_embed="sincos")
    bad = dict(sd)
    bad["layers.0.0.norm.beta"] = torch.ones_like(bad["layers.0.0.norm.beta"])
    with pytest.raises(ValueError, match="beta is not zero"):
        Zorro.from_zorro_pytorch(bad, heads=3, dim_head=16)
    extra = dict(sd)
    extra["something.else"] = torch.zeros(1)
    with pytest.raises(ValueError, match="something.else"):
        Zorro.from_zorro_pytorch(extra, heads=3, dim_head=16)
