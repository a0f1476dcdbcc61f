"""Any set of modalities: the modality table, purity for every modality, padding, subsets,
save/load, and a modality kind defined here without touching the library."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

import zorro
from zorro import ByteTokenizer, ModalityTokens, TokenTypes, Zorro, ZorroConfig, register_modality_kind
from zorro.masks import MASK_RULES

BACKENDS = ("sdpa", "eager", "flex")
SMALL = dict(dim=32, depth=2, heads=2, dim_head=16, num_fusion_tokens=3)
AUDIO = {"kind": "audio", "audio_patch_size": 8, "fbank_num_mel_bins": 32, "spec_aug_freq_mask": 0,
         "spec_aug_time_mask": 0, "spec_aug_stretch_factor": 1.0}
VIDEO = {"kind": "video", "video_patch_size": 8}
TABLES = {
    2: {"audio": AUDIO, "video": VIDEO},
    3: {"audio": AUDIO, "video": VIDEO, "text": {"kind": "text"}},
    4: {"audio": AUDIO, "video": VIDEO, "text": {"kind": "text"}, "imu": {"kind": "sequence", "input_dim": 6}},
}


def loud(model: Zorro) -> Zorro:
    """Weights far larger than the initialisation's, so anything that crossed between the
    modalities would be far above rounding."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0, 0.2)
        model.fusion_tokens.normal_()
        model.return_tokens.normal_()
    return model


def make(n: int, **overrides) -> Zorro:
    return loud(Zorro(**SMALL, modalities=TABLES[n], return_token_types=(*TABLES[n], "fusion", "global"), **overrides)).eval()


def inputs(n: int, batch: int = 2, seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"audio": torch.randn(batch, 4000, generator=g) * 0.1 * scale, "video": torch.randn(batch, 3, 2, 16, 16, generator=g) * scale}
    if n >= 3:
        out["text"] = torch.randint(3, 259, (batch, 7), generator=g)
    if n >= 4:
        out["imu"] = torch.randn(batch, 5, 6, generator=g) * scale
    return out


def other_values(name: str, x: torch.Tensor) -> torch.Tensor:
    """Different content of the same shape (fresh draws: a patch LayerNorm hides a rescaling)."""
    g = torch.Generator().manual_seed(99)
    if name == "text":
        return (x + 17 - 3) % 256 + 3
    return torch.randn(x.shape, generator=g) * x.std()


def test_default_model_is_audio_video_from_the_flat_options():
    config = ZorroConfig(dim=32, depth=1, audio_patch_size=8)
    assert config.modality_names == ("audio", "video") and config.modalities is None
    specs = config.modality_specs()
    assert specs["audio"]["kind"] == "audio" and specs["audio"]["audio_patch_size"] == 8
    assert "modalities" not in config.to_dict()  # a default config.json reads as before
    model = Zorro(config=config)
    assert model.modality_names == ("audio", "video") and model.audio_patch_size == (8, 8)
    assert isinstance(model.audio_embed, zorro.modalities.AudioTokenizer)


def test_flat_and_table_options_cannot_both_be_set():
    with pytest.raises(ValueError, match=r"set them in the spec.*audio_patch_size"):
        ZorroConfig(dim=32, depth=1, audio_patch_size=8, modalities={"audio": {"kind": "audio"}})


@pytest.mark.parametrize("spec, match", [
    ({"kind": "nope"}, r"kind 'nope', which is not registered.*register_modality_kind\('nope'"),
    ({"kind": "text", "vocab": 3}, r"unknown options \['vocab'\]"),
    ({"kind": "sequence"}, r"needs the options \['input_dim'\]"),
    ({"kind": "text", "pos_embed": "none"}, "model-wide setting"),
    ({"kind": "text", "vocab_size": {1, 2}}, "JSON values"),
    ("text", "a spec must be a dict"),
])
def test_bad_specs_are_named(spec, match):
    with pytest.raises(ValueError, match=match):
        ZorroConfig(dim=32, depth=1, modalities={"extra": spec})


def test_return_tokens_by_modality_name_and_token_type():
    config = ZorroConfig(**SMALL, modalities=TABLES[3], return_token_types=(TokenTypes.AUDIO, "text", "FUSION", "global"))
    assert config.return_token_names == ("audio", "text", "fusion", "global")
    assert config.to_dict()["return_token_types"] == ["AUDIO", "text", "FUSION", "GLOBAL"]
    assert ZorroConfig(**SMALL, modalities=TABLES[3]).return_token_names == ("audio", "video", "text", "fusion")
    with pytest.raises(ValueError, match="names no modality"):
        ZorroConfig(**SMALL, modalities={"text": {"kind": "text"}}, return_token_types=(TokenTypes.AUDIO,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_purity_of_every_modality(n, backend):
    """Each modality's output (and tokens) is bit-identical whatever the other inputs are, and
    equal to float rounding whether they are given at all (a shorter sequence can make the BLAS
    library pick another kernel for the token-wise matrix products); the fusion output changes
    when any input changes."""
    model = make(n, attn_backend=backend)
    x = inputs(n)
    with torch.no_grad():
        base = model.encode(**x)
        for name in x:
            changed = model.encode(**{k: (other_values(k, v) if k != name else v) for k, v in x.items()})
            alone = model.encode(**{name: x[name]})
            assert torch.equal(changed.embeddings[name], base.embeddings[name]), (name, "others changed")
            assert torch.equal(changed.tokens[name], base.tokens[name]), name
            torch.testing.assert_close(alone.embeddings[name], base.embeddings[name], atol=2e-6, rtol=1e-6, msg=name)
            one_changed = model.encode(**{k: (other_values(k, v) if k == name else v) for k, v in x.items()})
            assert (one_changed.embeddings["fusion"] - base.embeddings["fusion"]).abs().max() > 1e-3, name
            assert (one_changed.embeddings["global"] - base.embeddings["global"]).abs().max() > 1e-3, name


@pytest.mark.parametrize("rule", MASK_RULES)
@pytest.mark.parametrize("n", [3, 4])
def test_backends_agree_on_every_rule(n, rule):
    model = make(n, mask_rule=rule)
    x = inputs(n)
    x["text_mask"] = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    results = {}
    for backend in BACKENDS:
        model.set_attn_backend(backend)
        with torch.no_grad():
            results[backend] = model(**x)
    torch.testing.assert_close(results["sdpa"], results["eager"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(results["flex"], results["eager"], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("rule", MASK_RULES)
def test_gradients_agree_between_sdpa_and_eager_with_padding(rule):
    model = make(3, mask_rule=rule).train()
    x = inputs(3)
    x["text_mask"] = torch.tensor([[True] * 7, [True] * 2 + [False] * 5])
    grads = []
    for backend in ("sdpa", "eager"):
        model.set_attn_backend(backend).zero_grad()
        out = model(**x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], atol=1e-4, rtol=1e-3, msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_changes_an_output(backend):
    """The same text padded to 8 or to 40 tokens (and a sequence padded likewise) gives the same embeddings."""
    model = make(4, attn_backend=backend)
    tok = ByteTokenizer()
    texts = ["someone says seven", "the number 7"]
    x = inputs(4)
    ids, mask = tok.batch(texts)
    out = {}
    for length in (ids.shape[1] + 1, 40):
        pad_ids = torch.zeros(2, length, dtype=torch.long)
        pad_mask = torch.zeros(2, length, dtype=torch.bool)
        pad_ids[:, : ids.shape[1]], pad_mask[:, : ids.shape[1]] = ids, mask
        imu = torch.zeros(2, length, 6)
        imu[:, :5] = x["imu"]
        imu[:, 5:] = 99.0  # padding values must not matter either
        imu_mask = torch.zeros(2, length, dtype=torch.bool)
        imu_mask[:, :5] = True
        with torch.no_grad():
            out[length] = model.encode(audio=x["audio"], video=x["video"], text=pad_ids, text_mask=pad_mask, imu=imu, imu_mask=imu_mask)
    a, b = out.values()
    for name in ("audio", "video", "text", "imu", "fusion", "global"):
        torch.testing.assert_close(a.embeddings[name], b.embeddings[name], atol=1e-5, rtol=0, msg=name)


def test_a_sample_without_a_modality_gives_finite_outputs_and_gradients():
    model = make(3).train()
    x = inputs(3)
    x["text_mask"] = torch.tensor([[True] * 7, [False] * 7])  # the second clip has no caption
    for backend in BACKENDS[:2]:
        model.set_attn_backend(backend).zero_grad()
        out = model.encode(**x)
        assert all(torch.isfinite(e).all() for e in out.embeddings.values())
        # an absent modality pools nothing: its embedding is the return token itself
        torch.testing.assert_close(out.embeddings["text"][1], model.return_tokens[2], atol=0, rtol=0)
        sum(e.sum() for e in out.embeddings.values()).backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():  # the fusion output of that clip equals the fusion output without text
        model.eval().set_attn_backend("sdpa")
        with_absent = model.encode(**x).embeddings["fusion"][1]
        without = model.encode(audio=x["audio"][1:], video=x["video"][1:]).embeddings["fusion"][0]
        torch.testing.assert_close(with_absent, without, atol=1e-5, rtol=0)


def test_every_subset_of_inputs_through_encode():
    model = make(4)
    x = inputs(4)
    names = list(x)
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            out = model.encode(**{k: x[k] for k in subset})
            assert set(out.embeddings) == set(subset) | {"fusion", "global"}, subset
            assert set(out.tokens) == set(subset) | {"fusion"}
            assert all(e.shape == (2, 32) for e in out.embeddings.values())
    with pytest.raises(ValueError, match="at least one input"):
        model.encode()
    with pytest.raises(TypeError, match=r"unexpected inputs \['caption'\]"):
        model.encode(caption=x["text"])
    with pytest.raises(ValueError, match="batch sizes differ"):
        model.encode(audio=x["audio"], text=x["text"][:1])


def test_forward_keeps_its_positional_contract_with_more_modalities():
    model = make(3)
    x = inputs(3)
    full = model(**x)
    assert full.shape == (2, 5, 32)  # audio, video, text, fusion, global
    with pytest.raises(ValueError, match=r"return token 2 \(text\) needs text"):
        model(audio=x["audio"], video=x["video"])
    picked = model(audio=x["audio"], return_token_indices=(0, 3))
    torch.testing.assert_close(picked[:, 0], full[:, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"return token 2 \(text\) attends to text tokens, but no text was given"):
        model(audio=x["audio"], return_token_indices=(2,))


@pytest.mark.parametrize("n", [3, 4])
def test_save_load_round_trip_with_extra_modalities(n, tmp_path):
    model = make(n)
    x = inputs(n)
    model.save_pretrained(str(tmp_path))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["format_version"] == 2 and list(doc["config"]["modalities"]) == list(TABLES[n])
    loaded = Zorro.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**x), model(**x), atol=0, rtol=0)


class DepthTokenizer(nn.Module):
    """A modality kind of this test's own: depth maps (b, h, w) cut into p x p patches."""

    def __init__(self, dim: int, *, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(patch * patch, dim)

    def forward(self, depth: torch.Tensor) -> torch.Tensor:
        b, h, w = depth.shape
        p = self.patch
        patches = depth.reshape(b, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(b, -1, p * p)
        return self.proj(patches)  # (b, n, dim); this kind adds no positions


def test_a_kind_defined_here_trains_saves_and_loads(tmp_path):
    spec = {"video": VIDEO, "depth": {"kind": "depth", "patch": 4}}
    with pytest.raises(ValueError, match=r"register_modality_kind\('depth'"):
        Zorro(**SMALL, modalities=spec)
    register_modality_kind("depth", DepthTokenizer, replace=True)
    model = Zorro(**SMALL, modalities=spec, return_token_types=("video", "depth", "fusion"))
    video, depth = torch.randn(2, 3, 2, 16, 16), torch.randn(2, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.depth_embed.proj.weight.detach().clone()
    out = model.encode(video=video, depth=depth)
    (out.embeddings["depth"] - out.embeddings["video"]).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(before, model.depth_embed.proj.weight)
    model.eval().save_pretrained(str(tmp_path))
    loaded = Zorro.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(depth=depth).embeddings["depth"], model.encode(depth=depth).embeddings["depth"])
        # purity holds for a kind the library has never seen
        other_video = model.encode(video=torch.randn_like(video), depth=depth).embeddings["depth"]
        assert torch.equal(model.encode(video=video, depth=depth).embeddings["depth"], other_video)


def test_registering_checks_its_arguments():
    with pytest.raises(ValueError, match="built-in kind"):
        register_modality_kind("audio", DepthTokenizer)
    with pytest.raises(TypeError, match="nn.Module class"):
        register_modality_kind("thing", object)
    with pytest.raises(ValueError, match="lower-case identifier"):
        register_modality_kind("Thing", DepthTokenizer)
    assert {"audio", "video", "text", "sequence"} <= set(zorro.modalities.modality_kinds())


def test_tokenizer_returning_modality_tokens_with_its_own_mask():
    class Padded(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.proj = nn.Linear(1, dim)

        def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None) -> ModalityTokens:
            return ModalityTokens(self.proj(x[..., None]), mask, (x.shape[1],))

    register_modality_kind("scalar_series", Padded, replace=True)
    model = Zorro(**SMALL, modalities={"series": {"kind": "scalar_series"}}, return_token_types=("series",)).eval()
    x = torch.randn(1, 5)
    short = model.encode(series=x).embeddings["series"]
    padded = model.encode(series=torch.cat([x, torch.full((1, 3), 50.0)], 1),
                          series_mask=torch.tensor([[True] * 5 + [False] * 3])).embeddings["series"]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=0)


def test_byte_tokenizer():
    tok = ByteTokenizer()
    ids = tok.encode("seven, 7 ✓")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids.dtype == torch.long
    assert tok.decode(ids) == "seven, 7 ✓"
    assert int(ids.max()) < tok.vocab_size == 259
    batch, mask = tok.batch(["a", "abc"])
    assert batch.tolist() == [[1, 100, 2, 0, 0], [1, 100, 101, 102, 2]]
    assert mask.sum(1).tolist() == [3, 5]
    assert len(ByteTokenizer(max_length=5).encode("abcdefgh")) == 5
    with pytest.raises(ValueError, match="max_length"):
        ByteTokenizer(max_length=2)
    with pytest.raises(TypeError, match="sequence of strings"):
        tok.batch("abc")


def test_text_and_sequence_inputs_are_checked():
    model = make(4)
    with pytest.raises(TypeError, match="int64 tensor of token ids"):
        model.encode(text=torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 259\)"):
        model.encode(text=torch.full((2, 4), 300))
    with pytest.raises(ValueError, match=r"text_mask must have shape \(2, 4\)"):
        model.encode(text=torch.ones(2, 4, dtype=torch.long), text_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(batch, steps >= 1, 6\)"):
        model.encode(imu=torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="text_mask was given without text"):
        model.encode(audio=torch.randn(2, 4000), text_mask=torch.ones(2, 4, dtype=torch.bool))
