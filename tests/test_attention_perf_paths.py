"""Correctness of the fast paths added for performance (issue 7), each against the reference.

* ``AttentionPlan.attend_tokens_first`` (the SDPA split writing ``(b, n, h, d)`` directly)
  against the dense eager backend: values and gradients, every layout shape, fp32 and bf16.
* The memory-saving GEGLU + output projection autograd function against the plain expression.
* The analytic FLOP count of the benchmark against a direct count (mask sum, parameters).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from zorro import Zorro
from zorro.layers.attention import AttentionPlan
from zorro.layers.feedforward import FeedForward, geglu_project
from zorro.masks import TokenLayout

LAYOUTS = [(7, 3, 11), (0, 2, 9), (5, 2, 0), (6, 0, 8), (1, 1, 1)]


def qkv(layout: TokenLayout, b: int = 2, h: int = 3, d: int = 8, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, layout.total, d, generator=g).to(dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("counts", LAYOUTS)
def test_tokens_first_sdpa_matches_eager_values_and_grads(counts):
    layout = TokenLayout.audio_video(*counts)
    sdpa, eager = AttentionPlan(layout, "sdpa", "cpu"), AttentionPlan(layout, "eager", "cpu")
    q, k, v = qkv(layout)
    got = sdpa.attend_tokens_first(q, k, v, 0.35)
    assert got.shape == (2, layout.total, 3, 8)
    assert got.is_contiguous(), "the (b, n, h, d) result must reshape to (b, n, h*d) as a view"
    want = eager.attend_tokens_first(q, k, v, 0.35)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sdpa.attend(q, k, v, 0.35), got.transpose(1, 2))
    w = torch.randn_like(got)
    g_sdpa = torch.autograd.grad((got * w).sum(), (q, k, v))
    g_eager = torch.autograd.grad((want * w).sum(), (q, k, v))
    for a, b in zip(g_sdpa, g_eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_tokens_first_bf16_close_to_fp32_eager():
    layout = TokenLayout.audio_video(40, 4, 60)
    q, k, v = qkv(layout, d=16)
    want = AttentionPlan(layout, "eager", "cpu").attend_tokens_first(q, k, v, 0.25)
    got = AttentionPlan(layout, "sdpa", "cpu").attend_tokens_first(q.bfloat16(), k.bfloat16(), v.bfloat16(), 0.25)
    assert got.dtype == torch.bfloat16 and got.is_contiguous()
    assert (got.float() - want).abs().max() < 3e-2


def test_model_sdpa_vs_eager_under_bf16_autocast():
    torch.manual_seed(0)
    model = Zorro(dim=32, depth=2, heads=2, dim_head=16, num_fusion_tokens=3).eval()
    a, v = torch.randn(2, 8000), torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(audio=a, video=v)
        ref = model.set_attn_backend("eager")(audio=a, video=v)
    assert (fast.float() - ref.float()).abs().max() < 5e-2


def test_geglu_project_fp32_matches_plain_expression():
    import torch.nn.functional as F

    torch.manual_seed(0)
    h = torch.randn(3, 5, 14, requires_grad=True)
    weight = torch.randn(4, 7, requires_grad=True)
    value, gate = h.chunk(2, dim=-1)
    plain = F.linear(value * F.gelu(gate), weight)
    fused = geglu_project(value, gate, weight)
    assert torch.equal(fused, plain)
    w = torch.randn_like(plain)
    g_plain = torch.autograd.grad((plain * w).sum(), (h, weight))
    g_fused = torch.autograd.grad((fused * w).sum(), (h, weight))
    for a, b in zip(g_fused, g_plain):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    h64 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w64 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, u: geglu_project(*t.chunk(2, dim=-1), u), (h64, w64))


def test_geglu_project_bf16_and_no_grad_path():
    import torch.nn.functional as F

    torch.manual_seed(0)
    h = torch.randn(4, 10).bfloat16().requires_grad_()
    weight = torch.randn(3, 5).bfloat16().requires_grad_()
    value, gate = h.chunk(2, dim=-1)
    plain = F.linear(value * F.gelu(gate), weight)
    assert torch.equal(geglu_project(value, gate, weight), plain)
    g1 = torch.autograd.grad(geglu_project(value, gate, weight).float().sum(), (h, weight))
    g2 = torch.autograd.grad(plain.float().sum(), (h, weight))
    for a, b in zip(g1, g2):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
    with torch.no_grad():
        assert torch.equal(geglu_project(value, gate, weight), plain)


def test_feedforward_gradients_match_plain_autograd():
    torch.manual_seed(0)
    ff = FeedForward(16)
    x = torch.randn(2, 5, 16, requires_grad=True)
    out = ff(x)
    value, gate = ff.proj_in(ff.norm(x)).chunk(2, dim=-1)
    ref = ff.proj_out(value * torch.nn.functional.gelu(gate))
    torch.testing.assert_close(out, ref)
    params = [x, *ff.parameters()]
    for a, b in zip(torch.autograd.grad(out.square().sum(), params), torch.autograd.grad(ref.square().sum(), params)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dim", [16, 24])  # inner 42 (padded to 48 inside) and 64 (no padding)
def test_feedforward_padding_keeps_the_function_and_its_gradients(dim):
    from zorro.layers.feedforward import PAD_MULTIPLE

    torch.manual_seed(1)
    ff = FeedForward(dim).double()
    assert (ff.inner % PAD_MULTIPLE == 0) == (dim == 24)
    x = torch.randn(3, 7, dim, dtype=torch.float64, requires_grad=True)
    h = ff.proj_in(ff.norm(x))
    value, gate = h.chunk(2, dim=-1)
    ref = ff.proj_out(value * torch.nn.functional.gelu(gate))
    out = ff(x)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    params = [x, *ff.parameters()]
    grads = torch.autograd.grad(out.square().sum(), params)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    for a, b in zip(grads, ref_grads):
        assert a.shape == b.shape  # the weights' gradients keep the seed's shapes
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(ff(x), ref.detach(), atol=1e-12, rtol=1e-12)


def saved_shapes(module: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes of every tensor autograd saves for backward during ``module(x)``."""
    saved = []

    def pack(t):
        saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return saved


def test_feedforward_padding_keeps_no_padded_weight_copies_for_backward():
    ff = FeedForward(40)  # inner 106, padded to 112
    saved = saved_shapes(ff, torch.randn(2, 5, 40, requires_grad=True))
    padded_shapes = {(112, 40), (40, 112)}
    assert not padded_shapes & set(saved), saved
    assert (106, 40) in saved or (212, 40) in saved  # the parameters themselves are what is kept


@pytest.mark.parametrize("dim", [40, 24])  # inner 106 (padded to 112) and 64 (no padding)
def test_feedforward_keeps_the_geglu_product_out_of_backward(dim):
    ff = FeedForward(dim)
    width = ff.inner + (-ff.inner) % 16
    saved = saved_shapes(ff, torch.randn(2, 5, dim, requires_grad=True))
    # value and gate are kept for the GEGLU gradient; their product is recomputed in
    # backward (a third (2, 5, width) tensor is one more activation per layer in training)
    assert saved.count((2, 5, width)) == 2, saved


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (0, 3, 0, 0), (0, 3, 0, 2)])
def test_geglu_project_matches_plain_expression_and_gradcheck(pad):
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    inner, out = 5, 4
    value = torch.randn(2, 3, inner + pad[1], dtype=torch.float64, generator=g).requires_grad_()
    gate = torch.randn(2, 3, inner + pad[1], dtype=torch.float64, generator=g).requires_grad_()
    weight = torch.randn(out, inner, dtype=torch.float64, generator=g).requires_grad_()
    got = geglu_project(value, gate, weight, pad)
    want = F.linear(value * F.gelu(gate), F.pad(weight, pad))
    assert got.shape == (2, 3, out + pad[3])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    for a, b in zip(torch.autograd.grad(got.square().sum(), (value, gate, weight)),
                    torch.autograd.grad(want.square().sum(), (value, gate, weight))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(lambda v, t, w: geglu_project(v, t, w, pad), (value, gate, weight))
    with torch.no_grad():
        torch.testing.assert_close(geglu_project(value, gate, weight, pad), want.detach(), atol=1e-12, rtol=1e-12)


def test_feedforward_padding_under_bf16_autocast_matches_plain_autograd():
    import torch.nn.functional as F

    torch.manual_seed(0)
    ff = FeedForward(40)
    x = torch.randn(2, 5, 40, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ff(x)
    grads = torch.autograd.grad(out.float().square().sum(), [x, *ff.parameters()])
    pad = (-ff.inner) % 16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = ff.norm(x)
        w_value, w_gate = ff.proj_in.weight.split(ff.inner)
        value, gate = F.linear(h, F.pad(w_value, (0, 0, 0, pad))), F.linear(h, F.pad(w_gate, (0, 0, 0, pad)))
        ref = F.linear(value * F.gelu(gate), F.pad(ff.proj_out.weight, (0, pad)))
    ref_grads = torch.autograd.grad(ref.float().square().sum(), [x, *ff.parameters()])
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_geglu_compiles_without_graph_breaks():
    ff = FeedForward(16)
    x = torch.randn(2, 5, 16, requires_grad=True)
    compiled = torch.compile(ff, fullgraph=True)
    torch.testing.assert_close(compiled(x), ff(x))
    compiled(x).sum().backward()


def _bench_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_model.py"
    spec = importlib.util.spec_from_file_location("bench_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_flop_formula_matches_direct_count():
    bm = _bench_module()
    n_a, n_f, n_v = 12, 3, 20
    layout = TokenLayout.audio_video(n_a, n_f, n_v)
    assert bm.allowed_pairs(n_a, n_f, n_v) == int(layout.dense_mask("zorro").sum())
    model = Zorro(dim=32, depth=3, heads=2, dim_head=8, num_fusion_tokens=n_f)
    per_layer_params = sum(p.numel() for name, p in model.blocks[0].named_parameters() if p.dim() == 2)
    fl = bm.forward_flops(n_a, n_f, n_v, batch=2, dim=32, depth=3, heads=2, dim_head=8, audio_patch=256, video_patch=1536)
    assert fl["linear"] == 3 * 2.0 * 2 * layout.total * per_layer_params
    assert fl["attention"] == 3 * 4.0 * 2 * 2 * 8 * bm.allowed_pairs(n_a, n_f, n_v)
    assert fl["total"] == pytest.approx(sum(v for k, v in fl.items() if k != "total"))


def test_benchmark_main_layout_is_the_issue_configuration():
    bm = _bench_module()
    lay = bm.layout_for(bm.MAIN_N)
    assert (lay["n_a"], lay["n_f"], lay["n_v"], lay["n"]) == (664, 16, 1568, 2248)
    fl = bm.forward_flops(lay["n_a"], lay["n_f"], lay["n_v"], batch=2, dim=512, depth=4, heads=8, dim_head=64)
    assert 160e9 < fl["total"] < 175e9  # the issue quotes ~166 GFLOP (linear + allowed blocks)


def test_benchmark_profile_mode_runs_after_the_bf16_probe(monkeypatch, tmp_path):
    """``bench_model.py --profile`` without ``--precisions`` used to crash (it iterated over
    the precisions before the bf16 probe had chosen them)."""
    bm = _bench_module()
    calls = []

    def fake_child(task, timeout):
        calls.append(task)
        if task["kind"] == "peak":
            return {"status": "ok", "fp32": 0.1, "bf16": 0.001}  # emulated bf16: the probe drops it
        return {"status": "ok", "wall_s": 1.0, "categories_s": {"linear layers": 0.6, "attention": 0.4},
                "top_ops_s": {"aten::mm": 0.6}}

    monkeypatch.setattr(bm, "run_child", fake_child)
    assert bm.main(["--profile", "--out", str(tmp_path / "b.json")]) == 0
    profiled = [t for t in calls if t["kind"] == "profile"]
    assert {t["precision"] for t in profiled} == {"fp32"}
    assert {(t["model"], t["mode"]) for t in profiled} == {(m, d) for m in ("ours", "dense") for d in ("forward", "train")}
    assert (tmp_path / "b_profile.json").exists()


def _small_model(**kw):
    torch.manual_seed(0)
    return Zorro(dim=32, depth=3, heads=2, dim_head=16, num_fusion_tokens=3, spec_aug_freq_mask=0,
                 spec_aug_time_mask=0, spec_aug_stretch_factor=1.0, **kw)


def test_grad_checkpointing_keeps_outputs_and_gradients_and_saves_memory():
    model = _small_model().train()
    a, v = torch.randn(2, 8000), torch.randn(2, 3, 4, 32, 32)

    def run():
        saved = []
        def pack(t):  # count activations (batch-first, 3+ dims), not the weights kept by linear layers
            if t.dim() >= 3 and t.shape[0] == 2:
                saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(audio=a, video=v)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        return out.detach(), grads, sum(saved)

    out_plain, grads_plain, saved_plain = run()
    assert model.set_grad_checkpointing(True) is model and model.grad_checkpointing
    out_ckpt, grads_ckpt, saved_ckpt = run()
    torch.testing.assert_close(out_ckpt, out_plain, atol=0, rtol=0)
    for g1, g2 in zip(grads_ckpt, grads_plain):
        torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)
    assert saved_ckpt < 0.5 * saved_plain, (saved_ckpt, saved_plain)
    with torch.no_grad():  # evaluation ignores the setting
        torch.testing.assert_close(model.eval()(audio=a, video=v), out_plain, atol=0, rtol=0)
    with pytest.raises(TypeError, match="True or False"):
        model.set_grad_checkpointing("yes")
    assert "grad_checkpointing" not in model.config.to_dict()  # a run-time setting, not saved


def test_train_config_grad_checkpointing_reaches_the_backbone():
    from zorro.train import TrainConfig, build_backbone

    cfg = TrainConfig(task="pretrain", model={"arch": {"dim": 32, "depth": 1, "dim_head": 16, "heads": 2}, "grad_checkpointing": True})
    assert build_backbone(cfg).grad_checkpointing
    assert not build_backbone(TrainConfig(task="pretrain", model={"arch": {"dim": 32, "depth": 1, "dim_head": 16, "heads": 2}})).grad_checkpointing
    with pytest.raises(TypeError, match="grad_checkpointing"):
        TrainConfig(task="pretrain", model={"grad_checkpointing": "yes"})


@pytest.mark.slow
def test_grad_checkpointing_compiles_without_graph_breaks():
    model = _small_model().train()
    a, v = torch.randn(2, 8000), torch.randn(2, 3, 4, 32, 32)
    ref = model(audio=a, video=v)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    compiled = torch.compile(model.set_grad_checkpointing(True), fullgraph=True)
    out = compiled(audio=a, video=v)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    for g1, g2 in zip(grads, ref_grads):
        torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("rule", ["zorro", "full", "bottleneck"])
@pytest.mark.parametrize("counts", [(7, 3, 11), (0, 2, 9), (5, 0, 6)])
def test_fused_qkv_path_matches_the_plain_views_in_values_and_gradients(rule, counts):
    """``AttentionPlan.attend_qkv`` cuts the fused projection with ``block_views``, whose
    backward writes the gradient once: same values and gradients as permute/unbind + split."""
    layout = TokenLayout.audio_video(*counts)
    plan = AttentionPlan(layout, "sdpa", "cpu", rule)
    x = torch.randn(2, layout.total, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: plan.attend_qkv(t, 0.5), (x,), eps=1e-6, atol=1e-5)
    out = plan.attend_qkv(x, 0.5)
    w = torch.randn_like(out)
    (g_fused,) = torch.autograd.grad((out * w).sum(), x)
    q, k, v = x.permute(2, 0, 3, 1, 4).unbind(0)
    plain = plan.attend_tokens_first(q, k, v, 0.5)
    (g_plain,) = torch.autograd.grad((plain * w).sum(), x)
    assert torch.equal(out, plain)
    torch.testing.assert_close(g_fused, g_plain, atol=1e-12, rtol=0)


def test_block_views_backward_leaves_no_copy_of_the_gradient_behind():
    """One gradient tensor comes back, already in the projection's ``(b, n, s, h, d)`` layout."""
    from zorro.layers.attention import block_views

    x = torch.randn(2, 9, 3, 2, 4, requires_grad=True)
    (q, k, v), pieces = block_views(x, (4, 5))
    assert q.shape == (2, 2, 9, 4) and pieces[1][1].shape == (2, 2, 5, 4)
    (q.sum() + 2 * pieces[1][0].sum() + 3 * k.sum()).backward()
    assert x.grad.is_contiguous() and x.grad.shape == x.shape
    expected = torch.zeros_like(x)
    expected[:, :, 0] = 1
    expected[:, :, 1] = 3
    expected[:, :4, 1] += 2
    assert torch.equal(x.grad, expected)
