"""``mask_rule`` in the model: what each rule computes, and what follows from it.

The dense eager backend is the reference every other backend is checked against; purity
(audio output blind to the video and back) must hold for ``"zorro"`` and fail for the two
baselines; unimodal calls and save/load work under every rule.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_kwargs
from zorro import Zorro, ZorroConfig
from zorro.layers import attention as attention_module
from zorro.layers.attention import AttentionPlan
from zorro.masks import MASK_RULES, TokenLayout

LAYOUTS = [(7, 3, 11), (0, 2, 9), (5, 2, 0), (6, 0, 8), (1, 1, 1)]


def make(rule: str, **overrides) -> Zorro:
    return Zorro(**tiny_kwargs(mask_rule=rule, **overrides)).eval()


def loud(model: Zorro) -> Zorro:
    """Larger weights than the initialisation's (std 0.02), so that what crosses between the
    modalities is far above rounding (at init it is ~1e-6 of the output under "bottleneck")."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0, 0.2)
        model.fusion_tokens.normal_()
        model.return_tokens.normal_()
    return model


def inputs(batch=2, samples=8000, frames=4, size=16):
    return torch.randn(batch, samples), torch.randn(batch, 3, frames, size, size)


def qkv(layout: TokenLayout, b: int = 2, h: int = 3, d: int = 8):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, h, layout.total, d, generator=g).requires_grad_() for _ in range(3)]


def test_config_checks_and_defaults_the_rule():
    assert ZorroConfig(dim=8, depth=1).mask_rule == "zorro"
    with pytest.raises(ValueError, match="mask_rule must be one of"):
        ZorroConfig(dim=8, depth=1, mask_rule="mbt")


@pytest.mark.parametrize("rule", MASK_RULES)
@pytest.mark.parametrize("counts", LAYOUTS)
def test_plan_sdpa_matches_eager_values_and_grads(rule, counts):
    layout = TokenLayout.audio_video(*counts)
    q, k, v = qkv(layout)
    got = AttentionPlan(layout, "sdpa", "cpu", rule).attend_tokens_first(q, k, v, 0.35)
    want = AttentionPlan(layout, "eager", "cpu", rule).attend_tokens_first(q, k, v, 0.35)
    assert got.shape == (2, layout.total, 3, 8) and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad((got * w).sum(), (q, k, v)), torch.autograd.grad((want * w).sum(), (q, k, v))):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# Per rule, the (query count, key count) of every SDPA call for the layout (n_a, n_f, n_v) = (7, 3, 11):
# only the allowed blocks are computed, and "full" is one call over the whole sequence.
EXPECTED_CALLS = {
    "zorro": [(7, 7), (3, 21), (11, 11)],
    "bottleneck": [(7, 10), (3, 21), (11, 14)],
    "full": [(21, 21)],
}


@pytest.mark.parametrize("rule", MASK_RULES)
def test_sdpa_computes_only_the_allowed_blocks(rule, monkeypatch):
    calls = []
    original = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        calls.append((q.shape[-2], k.shape[-2]))
        return original(q, k, v, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    layout = TokenLayout.audio_video(7, 3, 11)
    q, k, v = qkv(layout)
    AttentionPlan(layout, "sdpa", "cpu", rule).attend_tokens_first(q, k, v, 0.35)
    assert calls == EXPECTED_CALLS[rule]


@pytest.mark.parametrize("rule", MASK_RULES)
def test_model_sdpa_matches_eager_outputs_and_gradients(rule):
    model = Zorro(**tiny_kwargs(mask_rule=rule, num_fusion_tokens=3)).train()
    a, v = inputs(batch=3, samples=4000, frames=2, size=24)
    results = []
    for backend in ("sdpa", "eager"):
        model.set_attn_backend(backend).zero_grad()
        out = model(audio=a, video=v)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_s, g_s), (out_e, g_e) = results
    torch.testing.assert_close(out_s, out_e, atol=1e-5, rtol=1e-4)
    for name in g_s:
        torch.testing.assert_close(g_s[name], g_e[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("rule", MASK_RULES)
def test_flex_matches_eager_forward(rule):
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = make(rule)
    a, v = inputs()
    with torch.no_grad():
        eager = model.set_attn_backend("eager")(audio=a, video=v)
        flex = model.set_attn_backend("flex")(audio=a, video=v)
    torch.testing.assert_close(flex, eager, atol=1e-5, rtol=1e-4)


def _change(out_a, out_b) -> float:
    return float((out_a - out_b).detach().abs().max())


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
@pytest.mark.parametrize("rule", MASK_RULES)
def test_purity_holds_for_zorro_alone(rule, backend):
    model = loud(make(rule, attn_backend=backend))
    a, v = inputs()
    base = model.encode(audio=a, video=v)
    new_video = model.encode(audio=a, video=torch.randn_like(v) * 3)
    new_audio = model.encode(audio=torch.randn_like(a) * 3, video=v)
    audio_moved = max(_change(base.embeddings["audio"], new_video.embeddings["audio"]), _change(base.audio_tokens, new_video.audio_tokens))
    video_moved = max(_change(base.embeddings["video"], new_audio.embeddings["video"]), _change(base.video_tokens, new_audio.video_tokens))
    if rule == "zorro":
        assert audio_moved <= 1e-6 and video_moved <= 1e-6
    else:  # the audio output sees the video (directly, or through the fusion tokens) and back
        assert audio_moved > 1e-2 and video_moved > 1e-2


def test_purity_in_gradients_follows_the_rule():
    a, v = inputs()
    for rule in MASK_RULES:
        model = loud(make(rule))
        video = v.clone().requires_grad_(True)
        model(audio=a, video=video, return_token_indices=(0,)).sum().backward()  # the audio output
        reached = video.grad is not None and float(video.grad.abs().max()) > 0
        assert reached is (rule != "zorro"), rule


@pytest.mark.parametrize("rule", MASK_RULES)
def test_unimodal_inference_under_every_rule(rule):
    model = loud(make(rule))
    a, v = inputs()
    assert model(audio=a, return_token_indices=(0, 2, 3)).shape == (2, 3, 32)  # audio, fusion, global
    assert model(video=v, return_token_indices=(1, 2, 3)).shape == (2, 3, 32)  # video, fusion, global
    audio_only, video_only = model.encode(audio=a), model.encode(video=v)
    assert set(audio_only.embeddings) == {"audio", "fusion", "global"}
    assert set(video_only.embeddings) == {"video", "fusion", "global"}
    for out in (audio_only, video_only):
        assert all(bool(torch.isfinite(e).all()) for e in out.embeddings.values())
    with torch.no_grad():  # the eager reference agrees on the unimodal sequences too
        fast = [model(audio=a, return_token_indices=(0, 2, 3)), model(video=v, return_token_indices=(1, 2, 3))]
        model.set_attn_backend("eager")
        ref = [model(audio=a, return_token_indices=(0, 2, 3)), model(video=v, return_token_indices=(1, 2, 3))]
        model.set_attn_backend("sdpa")
    for got, want in zip(fast, ref):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    both = model.encode(audio=a, video=v)
    moved = _change(audio_only.embeddings["audio"], both.embeddings["audio"])
    # Only Zorro's audio output is the same whether or not the video is there.
    assert (moved <= 1e-6) if rule == "zorro" else (moved > 1e-2)


@pytest.mark.parametrize("rule", MASK_RULES)
def test_save_load_round_trip_keeps_the_rule(rule, tmp_path):
    model = make(rule)
    model.save_pretrained(str(tmp_path / "m"))
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["config"]["mask_rule"] == rule
    again = Zorro.from_pretrained(str(tmp_path / "m")).eval()
    assert again.config.mask_rule == rule
    a, v = inputs()
    with torch.no_grad():
        assert torch.equal(again(audio=a, video=v), model(audio=a, video=v))


def test_rule_is_not_a_runtime_override(tmp_path):
    make("full").save_pretrained(str(tmp_path / "m"))
    with pytest.raises((TypeError, ValueError)):
        Zorro.from_pretrained(str(tmp_path / "m"), mask_rule="zorro")


def test_config_without_the_key_loads_as_zorro(tmp_path):
    model = make("zorro")
    model.save_pretrained(str(tmp_path / "m"))
    path = tmp_path / "m" / "config.json"
    doc = json.loads(path.read_text())
    del doc["config"]["mask_rule"]  # written before the option existed
    path.write_text(json.dumps(doc))
    again = Zorro.from_pretrained(str(tmp_path / "m")).eval()
    assert again.config.mask_rule == "zorro"
    a, v = inputs()
    with torch.no_grad():
        assert torch.equal(again(audio=a, video=v), model(audio=a, video=v))


def test_training_checkpoint_keeps_the_rule(tmp_path):
    from zorro.checkpoint import load_training_checkpoint, save_training_checkpoint

    model = make("bottleneck")
    ckpt = save_training_checkpoint(tmp_path / "run", model=model, step=3)
    again = Zorro.from_pretrained(str(ckpt))
    assert again.config.mask_rule == "bottleneck"
    state = load_training_checkpoint(ckpt, model=make("bottleneck"))
    assert state["model_config"]["mask_rule"] == "bottleneck"
