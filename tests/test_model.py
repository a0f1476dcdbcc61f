"""Model core: purity, unimodal inference, backends, gradients, errors, compile."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import ALL_TYPES, tiny_kwargs
from zorro import Zorro, TokenTypes
from zorro.layers.pos_embed import sincos_grid


def make(**overrides) -> Zorro:
    return Zorro(**tiny_kwargs(**overrides)).eval()


def inputs(batch=2, samples=8000, frames=4, size=16):
    return torch.randn(batch, samples), torch.randn(batch, 3, frames, size, size)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_output_shape_and_selection(backend):
    model = make(attn_backend=backend)
    a, v = inputs()
    assert model(audio=a, video=v).shape == (2, 4, 32)
    assert model(audio=a, video=v, return_token_indices=(3, 1)).shape == (2, 2, 32)
    full = model(audio=a, video=v)
    picked = model(audio=a, video=v, return_token_indices=(3, 1))
    torch.testing.assert_close(picked, full[:, [3, 1]])


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_purity_audio_unchanged_by_video_and_back(backend):
    model = make(attn_backend=backend)
    a, v = inputs()
    base = model.encode(audio=a, video=v)
    other_video = model.encode(audio=a, video=torch.randn_like(v) * 3)
    other_audio = model.encode(audio=torch.randn_like(a), video=v)
    assert (base.embeddings["audio"] - other_video.embeddings["audio"]).abs().max() <= 1e-6
    assert (base.audio_tokens - other_video.audio_tokens).abs().max() <= 1e-6
    assert (base.embeddings["video"] - other_audio.embeddings["video"]).abs().max() <= 1e-6
    assert (base.video_tokens - other_audio.video_tokens).abs().max() <= 1e-6
    # ... while the fusion and global outputs do see the other modality.
    assert (base.embeddings["fusion"] - other_video.embeddings["fusion"]).abs().max() > 1e-4
    assert (base.embeddings["global"] - other_audio.embeddings["global"]).abs().max() > 1e-4


def test_purity_holds_in_gradients():
    model = make()
    a, v = inputs()
    v.requires_grad_(True)
    out = model(audio=a, video=v, return_token_indices=(0,))  # the audio output
    out.sum().backward()
    assert v.grad is None or v.grad.abs().max() == 0


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_unimodal_calls_equal_the_multimodal_unimodal_outputs(backend):
    model = make(attn_backend=backend)
    a, v = inputs()
    both = model.encode(audio=a, video=v)
    audio_only = model.encode(audio=a)
    video_only = model.encode(video=v)
    assert set(audio_only.embeddings) == {"audio", "fusion", "global"}
    assert set(video_only.embeddings) == {"video", "fusion", "global"}
    torch.testing.assert_close(audio_only.embeddings["audio"], both.embeddings["audio"], atol=1e-6, rtol=0)
    torch.testing.assert_close(video_only.embeddings["video"], both.embeddings["video"], atol=1e-6, rtol=0)
    assert video_only.audio_tokens is None and audio_only.video_tokens is None
    # forward() without a modality: ask for the tokens it can compute, positions keep their meaning
    assert model(audio=a, return_token_indices=(0, 2, 3)).shape == (2, 3, 32)
    torch.testing.assert_close(model(video=v, return_token_indices=(1,))[:, 0], both.embeddings["video"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("given, token, missing, feedable", [("audio", "1 (VIDEO)", "video", "(0, 2, 3)"), ("video", "0 (AUDIO)", "audio", "(1, 2, 3)")])
def test_forward_without_a_modality_raises_instead_of_shifting_outputs(given, token, missing, feedable):
    # out[:, 1] used to become the fusion output silently when video was missing
    model = make()
    a, v = inputs()
    kwargs = {"audio": a} if given == "audio" else {"video": v}
    with pytest.raises(ValueError) as info:
        model(**kwargs)
    msg = str(info.value)
    assert f"return token {token} needs {missing}, but no {missing} was given" in msg
    assert f"return_token_indices={feedable}" in msg and "encode(" in msg


def test_missing_modality_token_request_raises():
    model = make()
    a, v = inputs()
    with pytest.raises(ValueError, match=r"return token 1 \(VIDEO\).*no video was given"):
        model(audio=a, return_token_indices=(0, 1))
    with pytest.raises(ValueError, match=r"return token 0 \(AUDIO\).*no audio was given"):
        model(video=v, return_token_indices=(0,))
    only_audio_outputs = Zorro(**tiny_kwargs(return_token_types=(TokenTypes.AUDIO,))).eval()
    with pytest.raises(ValueError, match="none of the return tokens"):
        only_audio_outputs(video=v)


def _grads(model, a, v):
    model.zero_grad()
    out = model(audio=a, video=v)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "samples,frames,size,fusion",
    [(8000, 4, 16, 4), (4000, 2, 24, 1), (12000, 6, 8, 7), (2000, 8, 32, 3)],
)
def test_sdpa_matches_eager_outputs_and_gradients(samples, frames, size, fusion):
    model = Zorro(**tiny_kwargs(num_fusion_tokens=fusion)).train()
    a, v = inputs(batch=3, samples=samples, frames=frames, size=size)
    out_s, g_s = _grads(model.set_attn_backend("sdpa"), a, v)
    out_e, g_e = _grads(model.set_attn_backend("eager"), a, v)
    torch.testing.assert_close(out_s, out_e, atol=1e-5, rtol=1e-4)
    for name in g_s:
        torch.testing.assert_close(g_s[name], g_e[name], atol=1e-5, rtol=1e-4, msg=name)


def test_flex_matches_eager_forward():
    pytest.importorskip("torch.nn.attention.flex_attention")
    model = make()
    a, v = inputs()
    with torch.no_grad():
        eager = model.set_attn_backend("eager")(audio=a, video=v)
        flex = model.set_attn_backend("flex")(audio=a, video=v)
    torch.testing.assert_close(flex, eager, atol=1e-5, rtol=1e-4)


def test_every_parameter_receives_a_gradient():
    model = Zorro(**tiny_kwargs()).train()
    a, v = inputs()
    model(audio=a, video=v).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_positional_embeddings_any_length_and_ordered():
    model = make()
    for samples, (t, s) in [(4000, (2, 8)), (30000, (8, 24)), (16000, (4, 40))]:
        a, v = torch.randn(1, samples), torch.randn(1, 3, t, s, s)
        out = model(audio=a, video=v)
        assert out.shape == (1, 4, 32) and torch.isfinite(out).all()
    # Patches are not an unordered set any more: swapping two video frames changes o_V.
    v = torch.randn(1, 3, 4, 16, 16)
    swapped = v[:, :, [2, 3, 0, 1]]
    o1 = model(video=v, return_token_indices=(1,))
    o2 = model(video=swapped, return_token_indices=(1,))
    assert (o1 - o2).abs().max() > 1e-4
    no_pos = make(pos_embed="none")
    p1 = no_pos(video=v, return_token_indices=(1,))
    p2 = no_pos(video=swapped, return_token_indices=(1,))
    torch.testing.assert_close(p1, p2, atol=1e-5, rtol=1e-5)  # the seed's blindness, for contrast


def test_sincos_grid_values():
    emb = sincos_grid((2, 3), 8)
    assert emb.shape == (6, 8)
    # row (i, j): [sin i, cos i, sin i/100, cos i/100, sin j, cos j, sin j/100, cos j/100]
    i, j = 1, 2
    row = emb[i * 3 + j]
    expected = torch.tensor([
        torch.sin(torch.tensor(1.0)), torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(0.01)), torch.cos(torch.tensor(0.01)),
        torch.sin(torch.tensor(2.0)), torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(0.02)), torch.cos(torch.tensor(0.02)),
    ])
    torch.testing.assert_close(row, expected)
    odd = sincos_grid((2, 2, 2), 10)  # 2 channels per axis, 4 left over and zero
    assert odd.shape == (8, 10) and odd[:, 6:].abs().sum() == 0 and odd[:, :6].abs().sum() > 0


@pytest.mark.filterwarnings("ignore:audio features of shape")
def test_position_tables_are_built_once_per_grid_and_dtype(monkeypatch):
    import zorro.modalities.base as base

    calls = []
    real = base.sincos_grid
    monkeypatch.setattr(base, "sincos_grid", lambda grid, dim, **kw: calls.append(tuple(grid)) or real(grid, dim, **kw))
    model = make()
    a, v = inputs()
    with torch.inference_mode():
        first = model(audio=a, video=v)
    assert len(calls) == 2  # the audio and the video grid
    model(audio=a, video=v)
    assert len(calls) == 2  # same sizes: the cached tables (made under inference_mode, usable here)
    model.train()
    model(audio=a, video=v).sum().backward()  # a cached table in a training step
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(audio=a, video=v)
        model(audio=a, video=v)
    assert len(calls) == 4  # one more table per grid for the other dtype, built once
    model(audio=a[:, : a.shape[1] // 2], video=v)
    assert len(calls) == 5 and calls[-1] != calls[0]  # a shorter clip: a new audio grid
    torch.testing.assert_close(model(audio=a, video=v), first)


def test_encode_names_and_grids():
    model = make()
    a, v = inputs()
    out = model.encode(audio=a, video=v)
    assert list(out.embeddings) == ["audio", "video", "fusion", "global"]
    assert all(t.shape == (2, 32) for t in out.embeddings.values())
    assert out.fusion_tokens.shape == (2, 4, 32)
    fp, tp = out.audio_grid
    assert out.audio_tokens.shape == (2, fp * tp, 32) and fp == 32 // 8
    assert out.video_grid == (2, 2, 2) and out.video_tokens.shape == (2, 8, 32)
    dup = Zorro(**tiny_kwargs(return_token_types=(TokenTypes.AUDIO, TokenTypes.AUDIO, TokenTypes.GLOBAL))).eval()
    assert list(dup.encode(audio=a).embeddings) == ["audio", "audio_1", "global"]


def test_crop_warns_once_via_warnings(capsys):
    model = make()
    a = torch.randn(1, 8720)  # 53 fbank frames: cropped to 48 (5 of an 8-frame patch lost; see tests/test_run_truth.py)
    with pytest.warns(UserWarning, match="cropped"):
        model(audio=a, return_token_indices=(0,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(audio=a, return_token_indices=(0,))  # second call: no warning
    assert capsys.readouterr().out == ""


def test_train_mode_spec_augment_does_not_touch_eval():
    a, v = inputs()
    plain = make()
    augmented = Zorro(**tiny_kwargs(spec_aug_freq_mask=8, spec_aug_time_mask=8, spec_aug_stretch_factor=0.8))
    augmented.load_state_dict(plain.state_dict())
    augmented.eval()
    torch.testing.assert_close(augmented(audio=a, video=v), plain(audio=a, video=v))


BAD_INPUTS = [
    (dict(), ValueError, "at least one input"),
    (dict(audio=torch.randn(8000)), ValueError, r"\(batch, samples\).*audio\[None\]"),
    (dict(audio=torch.randn(2, 2, 8000)), ValueError, "mix to mono"),
    (dict(audio=torch.randint(0, 10, (2, 8000))), TypeError, "floating-point"),
    (dict(audio=torch.randn(2, 100)), ValueError, "too short"),
    (dict(audio=[0.0] * 8000), TypeError, "torch.Tensor"),
    (dict(video=torch.randn(2, 4, 4, 16, 16)), ValueError, "3 channels"),
    (dict(video=torch.randn(2, 3, 16, 16)), ValueError, r"\(batch, 3, frames, height, width\)"),
    (dict(video=torch.randn(2, 3, 3, 16, 16)), ValueError, "multiples of the tubelet size"),
    (dict(video=torch.randn(2, 3, 4, 16, 12)), ValueError, "multiples of the tubelet size"),
    (dict(video=torch.zeros(2, 3, 4, 16, 16, dtype=torch.uint8)), TypeError, "floating point"),
    (dict(audio=torch.randn(3, 8000), video=torch.randn(2, 3, 4, 16, 16)), ValueError, "batch sizes differ"),
    (dict(audio=torch.randn(2, 8000), return_token_indices=(0, 0)), ValueError, "unique"),
    (dict(audio=torch.randn(2, 8000), return_token_indices=(9,)), ValueError, "out of range"),
    (dict(audio=torch.randn(2, 8000), return_token_indices=(-1,)), ValueError, "out of range"),
    (dict(audio=torch.randn(2, 8000), return_token_indices=(0.5,)), TypeError, "ints"),
    (dict(audio=torch.randn(2, 8000), return_token_indices=()), ValueError, "empty"),
    (dict(audio=torch.full((2, 8000), float("nan"))), ValueError, "(?i)nan|finite"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    model = make()
    if len(kwargs) == 1:  # one modality: ask only for the outputs it feeds
        kwargs = dict(kwargs, return_token_indices=(0, 2, 3) if "audio" in kwargs else (1, 2, 3))
    with pytest.raises(error, match=match):
        model(**kwargs)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(dim=0), ValueError),
        (dict(attn_backend="dense"), ValueError),
        (dict(pos_embed="learned"), ValueError),
        (dict(num_fusion_tokens=0), ValueError),  # a FUSION return token needs fusion tokens
        (dict(return_token_types=("AUDIO", "NOPE")), ValueError),
        (dict(audio_patch_size=(8, 8, 8)), TypeError),
        (dict(audio_patch_size=64), ValueError),  # taller than the 32 mel bins
    ],
)
def test_bad_constructor_arguments(kwargs, error):
    with pytest.raises(error):
        Zorro(**tiny_kwargs(**kwargs))


def test_seed_defaults_are_kept():
    model = Zorro(dim=64, depth=1)
    c = model.config
    assert (c.dim_head, c.heads, c.ff_mult, c.num_fusion_tokens) == (64, 8, 4, 16)
    assert (c.audio_patch_size, c.video_patch_size, c.video_temporal_patch_size, c.video_channels) == (16, 16, 2, 3)
    assert (c.spec_n_fft, c.spec_power, c.spec_win_length, c.spec_hop_length, c.spec_pad) == (128, 2, 24, None, 0)
    assert (c.spec_center, c.spec_pad_mode) == (True, "reflect")
    assert (c.spec_aug_stretch_factor, c.spec_aug_freq_mask, c.spec_aug_time_mask) == (0.8, 80, 80)
    assert c.return_token_types == (TokenTypes.AUDIO, TokenTypes.VIDEO, TokenTypes.FUSION)
    assert [t.value for t in TokenTypes] == [0, 1, 2, 3]
    assert model.return_tokens.shape == (3, 64) and model.fusion_tokens.shape == (16, 64)


def test_config_round_trip():
    model = make()
    from zorro import ZorroConfig

    again = ZorroConfig.from_dict(model.config.to_dict())
    assert again == model.config
    with pytest.raises(ValueError, match="unknown Zorro config keys"):
        ZorroConfig.from_dict({**model.config.to_dict(), "bogus": 1})


def test_bf16_autocast_runs_and_stays_close():
    model = make()
    a, v = inputs()
    ref = model(audio=a, video=v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(audio=a, video=v)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max() < 0.15


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = make()
    a, v = inputs()
    expected = model(audio=a, video=v)
    compiled = torch.compile(model, fullgraph=True)
    got = compiled(audio=a, video=v)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_audio_features_input_equals_the_waveform_input():
    torch.manual_seed(0)
    model = Zorro(**tiny_kwargs(audio_mean=-4.0, audio_std=3.0)).eval()
    audio, video = 0.1 * torch.randn(2, 4000), torch.randn(2, 3, 4, 16, 16)
    feats = model.audio_frontend.features(audio)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the crop warning
        a = model.encode(audio=audio, video=video)
        b = model.encode(audio_features=feats, video=video)
        only = model.encode(audio_features=feats)
    assert set(a.embeddings) == set(b.embeddings) == {"audio", "video", "fusion", "global"}
    for name in a.embeddings:
        assert torch.equal(a.embeddings[name], b.embeddings[name]), name
    assert set(only.embeddings) == {"audio", "fusion", "global"}
    with pytest.raises(ValueError, match="not both"):
        model.encode(audio=audio, audio_features=feats)
    with pytest.raises(ValueError, match="features must have shape"):
        model.encode(audio_features=feats[:, :5])
    with pytest.raises(ValueError, match="fewer than one audio patch"):
        model.encode(audio_features=feats[:, :, :3])
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.encode(audio_features=feats, video=video[:1])
