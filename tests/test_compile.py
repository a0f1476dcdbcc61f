"""``torch.compile`` of the model for every attention backend: equality with eager (outputs and
gradients), no graph breaks in the backbone's forward, a bounded number of recompilations, and
the clear error of the one combination PyTorch cannot run (FlexAttention backward on CPU).

The models are small (dim 32, one layer) and take two ``sequence`` modalities, so that a
compilation is the attention and the layers, not an audio front-end; one test compiles the
default audio-video model with a padded text modality.
"""

from __future__ import annotations

import pytest
import torch

from zorro import Zorro
from zorro.layers.attention import AttentionPlan
from zorro.layers.flex import CPU_BACKWARD_MESSAGE, rectangles_mask_mod, rule_rectangles
from zorro.masks import MASK_RULES, TokenLayout

SEQ = {"imu": {"kind": "sequence", "input_dim": 6}, "gps": {"kind": "sequence", "input_dim": 3}}
HAS_FLEX = hasattr(torch.nn.attention, "flex_attention") or pytest.importorskip("torch.nn.attention.flex_attention")


def make(backend: str = "sdpa", rule: str = "zorro", **kw) -> Zorro:
    torch.manual_seed(0)
    model = Zorro(dim=32, depth=1, heads=2, dim_head=16, num_fusion_tokens=3, modalities=SEQ,
                  return_token_types=("imu", "gps", "fusion", "global"), attn_backend=backend, mask_rule=rule, **kw)
    with torch.no_grad():  # weights far above the initialisation's, so differences are not hidden by scale
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def batch(size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"imu": torch.randn(size, 9, 6, generator=g), "gps": torch.randn(size, 5, 3, generator=g)}


def weighted(out: torch.Tensor) -> torch.Tensor:
    return (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()


# ---------------------------------------------------------------- the flex mask, without compiling


LAYOUTS = [
    TokenLayout.audio_video(7, 3, 11),
    TokenLayout.audio_video(0, 2, 9),
    TokenLayout.audio_video(5, 2, 0),
    TokenLayout((("audio", 4), ("fusion", 2), ("video", 3), ("text", 5))),
    TokenLayout((("audio", 4), ("fusion", 2), ("video", 0), ("text", 5), ("imu", 3))),
]


@pytest.mark.parametrize("rule", MASK_RULES)
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: "-".join(f"{n}{c}" for n, c in lay.blocks))
def test_rule_rectangles_are_the_dense_mask(layout, rule):
    n = layout.total
    q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]
    from_rects = rectangles_mask_mod(rule_rectangles(layout, rule))(None, None, q, k)
    assert torch.equal(from_rects, layout.dense_mask(rule))


def test_full_rule_is_one_rectangle():
    layout = TokenLayout.audio_video(7, 3, 11)
    assert rule_rectangles(layout, "full") == [(0, 21, 0, 21)]
    assert len(rule_rectangles(layout, "zorro")) == 3


def test_flex_training_on_cpu_says_what_to_use_instead():
    model = make("flex").train()
    with pytest.raises(ValueError, match="attn_backend='sdpa'") as err:
        model(**batch()).sum().backward()
    assert str(err.value) == CPU_BACKWARD_MESSAGE
    with torch.no_grad():  # inference is fine
        assert model(**batch()).shape == (2, 4, 32)


@pytest.mark.slow
@pytest.mark.parametrize("fullgraph", [False, True])
def test_compiled_flex_training_on_cpu_says_what_to_use_instead(fullgraph):
    """Compiled, the same error at the first call (with ``fullgraph=True`` Dynamo may wrap it
    in its ``Unsupported``, a RuntimeError whose message carries ours)."""
    torch._dynamo.reset()
    model = make("flex").train()
    with pytest.raises((ValueError, RuntimeError), match="attn_backend='sdpa'"):
        torch.compile(model, fullgraph=fullgraph)(**batch()).sum().backward()


# ---------------------------------------------------------------- graph breaks (traced, not compiled)


@pytest.mark.parametrize("backend", ["sdpa", "flex", "eager"])
def test_no_graph_break_in_the_forward(backend):
    model = make(backend).eval()
    x = batch()
    x["imu_mask"] = torch.tensor([[True] * 9, [True] * 4 + [False] * 5])
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(**x)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    if backend != "flex":  # with gradients (flex has no CPU backward)
        model.train()
        explained = torch._dynamo.explain(model)(**batch())
        assert explained.graph_break_count == 0, explained.break_reasons


# ---------------------------------------------------------------- compiled equals eager


def _compiled_forward_matches(backend, rule):
    torch._dynamo.reset()
    model = make(backend, rule).eval()
    x = batch()
    x["gps_mask"] = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    with torch.no_grad():
        ref = model.set_attn_backend("eager")(**x)
        model.set_attn_backend(backend)
        out = torch.compile(model)(**x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_compiled_forward_matches_eager(backend):
    _compiled_forward_matches(backend, "zorro")


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["full", "bottleneck"])
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_compiled_forward_matches_eager_other_rules(backend, rule):
    _compiled_forward_matches(backend, rule)


def _grads(model, x, call=None):
    model.zero_grad(set_to_none=True)
    out = (model if call is None else call)(**x)
    weighted(out).backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize("rule", MASK_RULES)
def test_compiled_training_step_matches_eager(rule):
    torch._dynamo.reset()
    model = make("sdpa", rule).train()
    x = batch()
    out_e, g_e = _grads(model.set_attn_backend("eager"), x)
    model.set_attn_backend("sdpa")
    out_c, g_c = _grads(model, x, torch.compile(model))
    torch.testing.assert_close(out_c, out_e, atol=1e-4, rtol=1e-4)
    assert g_c.keys() == g_e.keys() and len(g_e) > 10
    for name in g_e:
        torch.testing.assert_close(g_c[name], g_e[name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_compiled_default_model_with_padded_text_matches_eager():
    from conftest import tiny_kwargs

    torch._dynamo.reset()
    table = {"audio": {"kind": "audio", "audio_patch_size": 8, "fbank_num_mel_bins": 32, "spec_aug_freq_mask": 0,
                       "spec_aug_time_mask": 0, "spec_aug_stretch_factor": 1.0},
             "video": {"kind": "video", "video_patch_size": 8}, "text": {"kind": "text"}}
    kw = tiny_kwargs(depth=1, modalities=table, return_token_types=("audio", "video", "text", "fusion", "global"))
    model = Zorro(**{k: v for k, v in kw.items() if not k.startswith(("audio_", "video_", "fbank_", "spec_"))}).eval()
    g = torch.Generator().manual_seed(0)
    x = {"audio": torch.randn(2, 4000, generator=g) * 0.1, "video": torch.randn(2, 3, 2, 16, 16, generator=g),
         "text": torch.randint(3, 259, (2, 7), generator=g), "text_mask": torch.tensor([[True] * 7, [False] * 7])}
    with torch.no_grad():
        ref = model.set_attn_backend("eager")(**x)
        out = torch.compile(model.set_attn_backend("flex"))(**x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- recompilation


def test_smaller_last_batch_and_train_eval_switches_do_not_recompile_every_step():
    """An epoch of training batches (the last one smaller) then an evaluation (its last batch
    smaller too): the first epoch compiles a bounded number of graphs, later epochs none."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = make("sdpa")
    counter = CompileCounter()  # counts the graphs Dynamo hands to the compiler; compiles nothing itself
    compiled = torch.compile(model, backend=counter)
    per_epoch = []
    for epoch in range(3):
        model.train()
        for size in (4, 4, 3):
            weighted(compiled(**batch(size, seed=epoch))).backward()
        model.eval()
        with torch.no_grad():
            for size in (4, 2):
                compiled(**batch(size, seed=epoch))
        per_epoch.append(counter.frame_count)
    assert per_epoch[0] <= 4, per_epoch  # train, train at a dynamic batch, eval (dynamic already), ...
    assert per_epoch[2] == per_epoch[0], f"recompiled after the first epoch: graphs compiled by epoch {per_epoch}"


# ---------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("rule", MASK_RULES)
def test_compiled_flex_training_on_cuda_matches_eager(rule):
    torch._dynamo.reset()
    model = make("flex", rule).cuda().train()
    x = {k: v.cuda() for k, v in batch().items()}
    out_e, g_e = _grads(model.set_attn_backend("eager"), x)
    model.set_attn_backend("flex")
    out_c, g_c = _grads(model, x, torch.compile(model))
    torch.testing.assert_close(out_c, out_e, atol=1e-4, rtol=1e-4)
    for name in g_e:
        torch.testing.assert_close(g_c[name], g_e[name], atol=1e-4, rtol=1e-4, msg=name)
