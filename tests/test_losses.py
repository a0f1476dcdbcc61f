import math
import os

import pytest
import torch
import torch.nn.functional as F

from zorro.heads import ContrastiveHead
from zorro.losses import ZorroContrastiveLoss, classification_loss, info_nce, mixup


# --------------------------------------------------------------------------- info_nce


def test_info_nce_hand_computed_2x2():
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    b = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    s = 3.0
    # a @ b.T = [[0.8, 0.0], [0.96, 0.8]]
    # a->b rows: [2.4, 0.0] (target 0), [2.88, 2.4] (target 1)
    l_ab = 0.5 * ((math.log(math.exp(2.4) + math.exp(0.0)) - 2.4) + (math.log(math.exp(2.88) + math.exp(2.4)) - 2.4))
    # b->a rows (columns of a @ b.T): [2.4, 2.88] (target 0), [0.0, 2.4] (target 1)
    l_ba = 0.5 * ((math.log(math.exp(2.4) + math.exp(2.88)) - 2.4) + (math.log(math.exp(0.0) + math.exp(2.4)) - 2.4))
    expected = 0.5 * (l_ab + l_ba)
    assert info_nce(a, b, s).item() == pytest.approx(expected, rel=1e-6)
    assert info_nce(a, b, torch.tensor(s)).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_asymmetric_case_and_symmetry():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    s = 2.0
    # a @ b.T = [[0.6, 0.0], [0.8, 1.0]]
    l_ab = 0.5 * ((math.log(math.exp(1.2) + 1.0) - 1.2) + (math.log(math.exp(1.6) + math.exp(2.0)) - 2.0))
    l_ba = 0.5 * ((math.log(math.exp(1.2) + math.exp(1.6)) - 1.2) + (math.log(1.0 + math.exp(2.0)) - 2.0))
    assert info_nce(a, b, s).item() == pytest.approx(0.5 * (l_ab + l_ba), rel=1e-6)
    assert info_nce(b, a, s).item() == pytest.approx(info_nce(a, b, s).item(), rel=1e-6)


def test_info_nce_gradient_reaches_logit_scale():
    head = ContrastiveHead(6, 4)
    g = torch.Generator().manual_seed(0)
    z = head({"audio": torch.randn(5, 6, generator=g), "video": torch.randn(5, 6, generator=g)})
    loss = info_nce(z["audio"], z["video"], head.logit_scale())
    loss.backward()
    assert head.log_logit_scale.grad is not None and head.log_logit_scale.grad.abs().item() > 0
    assert head.projections["audio"][-1].weight.grad.abs().sum() > 0


def test_info_nce_bad_inputs():
    a = F.normalize(torch.randn(4, 3), dim=1)
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, a[:3], 1.0)
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        info_nce(a[0], a[0], 1.0)
    with pytest.raises(TypeError, match="floating point"):
        info_nce(a.long(), a.long(), 1.0)
    with pytest.raises(TypeError, match="same dtype"):
        info_nce(a, a.double(), 1.0)
    with pytest.raises(ValueError, match="> 0"):
        info_nce(a, a, 0.0)
    with pytest.raises(ValueError, match="scalar"):
        info_nce(a, a, torch.ones(2))
    with pytest.raises(ValueError, match="empty"):
        info_nce(a[:0], a[:0], 1.0)


# --------------------------------------------------------------------------- ZorroContrastiveLoss


def _projections(batch=4, p=3, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, width in (("audio", p), ("video", p), ("fusion", 2 * p), ("global", 2 * p)):
        out[name] = F.normalize(torch.randn(batch, width, generator=g), dim=1).requires_grad_(requires_grad)
    return out


def test_zorro_contrastive_loss_combines_terms():
    z = _projections()
    s = 5.0
    u = torch.cat([z["audio"], z["video"]], dim=1) / math.sqrt(2)
    av = info_nce(z["audio"], z["video"], s)
    fu = info_nce(z["fusion"], u, s)
    gl = info_nce(z["global"], u, s)
    loss_fn = ZorroContrastiveLoss(fusion_weight=0.5, global_weight=2.0)
    total, parts = loss_fn(z, s)
    assert total.item() == pytest.approx((av + 0.5 * fu + 2.0 * gl).item(), rel=1e-6)
    assert parts["audio_video"] == pytest.approx(av.item(), rel=1e-6)
    assert parts["fusion"] == pytest.approx(fu.item(), rel=1e-6)
    assert parts["global"] == pytest.approx(gl.item(), rel=1e-6)
    assert parts["total"] == pytest.approx(total.item(), rel=1e-6)
    assert all(isinstance(v, float) for v in parts.values())
    # the target [z_A; z_V] / sqrt(2) has unit norm
    torch.testing.assert_close(u.norm(dim=1), torch.ones(4))


def test_zorro_contrastive_loss_missing_outputs_and_weights():
    z = _projections()
    total, parts = ZorroContrastiveLoss()({"audio": z["audio"], "video": z["video"]}, 2.0)
    assert set(parts) == {"audio_video", "total"}
    assert total.item() == pytest.approx(info_nce(z["audio"], z["video"], 2.0).item(), rel=1e-6)
    _, parts = ZorroContrastiveLoss(global_weight=0.0)(z, 2.0)
    assert set(parts) == {"audio_video", "fusion", "total"}
    with pytest.raises(ValueError, match="missing"):
        ZorroContrastiveLoss()({"audio": z["audio"], "fusion": z["fusion"]}, 2.0)
    with pytest.raises(ValueError, match=r"\(B, M \* P\)"):
        ZorroContrastiveLoss()({"audio": z["audio"], "video": z["video"], "fusion": z["audio"]}, 2.0)
    with pytest.raises(ValueError, match="fusion_weight"):
        ZorroContrastiveLoss(fusion_weight=-1.0)


@pytest.mark.parametrize("detach", [True, False])
def test_zorro_contrastive_loss_stop_gradient(detach):
    z = _projections(requires_grad=True)
    # With detached targets, the multimodal terms send no gradient to the unimodal projections.
    total, _ = ZorroContrastiveLoss(detach_unimodal_targets=detach)(z, 4.0)
    total.backward()
    grads = {k: v.grad.clone() for k, v in z.items()}
    z2 = _projections(requires_grad=True)
    info_nce(z2["audio"], z2["video"], 4.0).backward()
    same = torch.allclose(grads["audio"], z2["audio"].grad) and torch.allclose(grads["video"], z2["video"].grad)
    assert same is detach
    assert grads["fusion"].abs().sum() > 0 and grads["global"].abs().sum() > 0


# --------------------------------------------------------------------------- DDP gather


def _ddp_worker(rank, world, init_file, out_dir, batch, seed):
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.manual_seed(seed)
        head = ContrastiveHead(6, 3, hidden_dim=5).double()
        emb = _ddp_inputs(batch, seed)
        per = batch // world
        local = {k: v[rank * per:(rank + 1) * per].clone().requires_grad_(True) for k, v in emb.items()}
        loss_fn = ZorroContrastiveLoss(fusion_weight=0.7, global_weight=1.3)
        total, _ = loss_fn(head(local), head.logit_scale())
        total.backward()
        with torch.no_grad():  # control: without the gather the loss would differ
            no_gather, _ = ZorroContrastiveLoss(fusion_weight=0.7, global_weight=1.3, gather=False)(
                head(local), head.logit_scale()
            )
            dist.all_reduce(no_gather)
            no_gather /= world
        # What DDP would do: average the losses and the replicated parameters' gradients.
        loss = total.detach().clone()
        dist.all_reduce(loss)
        loss /= world
        param_grads = {}
        for name, p in head.named_parameters():
            g = p.grad.clone()
            dist.all_reduce(g)
            param_grads[name] = g / world
        # A rank-local input's gradient is that of the summed per-rank losses.
        input_grads = {k: v.grad / world for k, v in local.items()}
        torch.save(
            {"loss": loss, "no_gather": no_gather, "param_grads": param_grads, "input_grads": input_grads},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def _ddp_inputs(batch, seed):
    g = torch.Generator().manual_seed(seed + 1)
    return {n: torch.randn(batch, 6, generator=g, dtype=torch.float64) for n in ("audio", "video", "fusion", "global")}


@pytest.mark.slow
def test_ddp_gather_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    batch, world, seed = 6, 2, 123
    mp.spawn(
        _ddp_worker,
        args=(world, str(tmp_path / "init"), str(tmp_path), batch, seed),
        nprocs=world,
        join=True,
    )
    torch.manual_seed(seed)
    head = ContrastiveHead(6, 3, hidden_dim=5).double()
    emb = {k: v.requires_grad_(True) for k, v in _ddp_inputs(batch, seed).items()}
    total, _ = ZorroContrastiveLoss(fusion_weight=0.7, global_weight=1.3)(head(emb), head.logit_scale())
    total.backward()

    per = batch // world
    for rank in range(world):
        res = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(res["loss"].item() - total.item()) <= 1e-6
        assert abs(res["no_gather"].item() - total.item()) > 1e-3
        for name, p in head.named_parameters():
            torch.testing.assert_close(res["param_grads"][name], p.grad, atol=1e-6, rtol=0)
        for k, v in emb.items():
            torch.testing.assert_close(res["input_grads"][k], v.grad[rank * per:(rank + 1) * per], atol=1e-6, rtol=0)
    assert head.log_logit_scale.grad.abs().item() > 0


def test_info_nce_gather_false_without_distributed_is_local():
    a, b = _projections()["audio"], _projections(seed=1)["video"]
    assert info_nce(a, b, 3.0, gather=False).item() == pytest.approx(info_nce(a, b, 3.0).item())


# --------------------------------------------------------------------------- classification


def _logits(batch=5, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, classes, generator=g) for n in ("audio", "video", "fusion", "global")}


def test_single_label_loss_with_label_smoothing_matches_hand_formula():
    logits = _logits()
    y = torch.tensor([0, 3, 1, 1, 2])
    eps = 0.1
    total, parts = classification_loss(logits, y, multi_label=False, label_smoothing=eps)
    expected_total = 0.0
    for name, x in logits.items():
        logp = x.log_softmax(dim=1)
        nll = -logp[torch.arange(5), y]
        uniform = -logp.mean(dim=1)
        hand = ((1 - eps) * nll + eps * uniform).mean().item()
        assert parts[name] == pytest.approx(hand, rel=1e-6)
        assert parts[name] == pytest.approx(F.cross_entropy(x, y, label_smoothing=eps).item(), rel=1e-6)
        expected_total += hand
    assert total.item() == pytest.approx(expected_total, rel=1e-6)
    assert parts["total"] == pytest.approx(expected_total, rel=1e-6)


def test_single_label_soft_targets_equal_hard_for_one_hot():
    logits = _logits()
    y = torch.tensor([0, 3, 1, 1, 2])
    hard, _ = classification_loss(logits, y, multi_label=False)
    soft, _ = classification_loss(logits, F.one_hot(y, 4).float(), multi_label=False)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    # hand value for one head: -log softmax at the target
    x = logits["audio"][0]
    hand = -(x[0].item() - math.log(sum(math.exp(v) for v in x.tolist())))
    _, parts = classification_loss({"audio": logits["audio"][:1]}, y[:1], multi_label=False)
    assert parts["audio"] == pytest.approx(hand, rel=1e-6)


def test_multi_label_bce_hand_computed():
    x = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    y = torch.tensor([[1.0, 0.0], [1.0, 1.0]])

    def bce(logit, t):
        p = 1 / (1 + math.exp(-logit))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    hand = sum(bce(x[i, j].item(), y[i, j].item()) for i in range(2) for j in range(2)) / 4
    total, parts = classification_loss({"fusion": x}, y, multi_label=True)
    assert total.item() == pytest.approx(hand, rel=1e-6)
    assert set(parts) == {"fusion", "total"}
    eps = 0.2
    smooth = sum(bce(x[i, j].item(), y[i, j].item() * (1 - eps) + eps / 2) for i in range(2) for j in range(2)) / 4
    total, _ = classification_loss({"fusion": x}, y, multi_label=True, label_smoothing=eps)
    assert total.item() == pytest.approx(smooth, rel=1e-6)


def test_classification_loss_missing_heads_and_errors():
    logits = _logits()
    y = torch.tensor([0, 3, 1, 1, 2])
    partial = {"audio": logits["audio"], "video": None}
    total, parts = classification_loss(partial, y, multi_label=False)
    assert set(parts) == {"audio", "total"}
    with pytest.raises(ValueError, match="no head"):
        classification_loss({}, y, multi_label=False)
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 4\)"):
        classification_loss(logits, torch.tensor([0, 4, 1, 1, 2]), multi_label=False)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        classification_loss(logits, y[:3], multi_label=False)
    with pytest.raises(TypeError, match="multi-label targets must be a float"):
        classification_loss(logits, torch.zeros(5, 4, dtype=torch.long), multi_label=True)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classification_loss(logits, torch.full((5, 4), 2.0), multi_label=True)
    with pytest.raises(ValueError, match="label_smoothing"):
        classification_loss(logits, y, multi_label=False, label_smoothing=1.0)
    with pytest.raises(ValueError, match="expected"):
        classification_loss({"audio": torch.zeros(5, 4), "video": torch.zeros(5, 3)}, y, multi_label=False)


# --------------------------------------------------------------------------- mixup


def test_mixup_mixes_inputs_and_targets_consistently():
    audio = torch.arange(4, dtype=torch.float32).reshape(4, 1).repeat(1, 3)
    video = 10 * torch.arange(4, dtype=torch.float32).reshape(4, 1, 1)
    y = torch.tensor([0, 1, 2, 0])
    out = mixup([audio, None, video], y, alpha=0.4, num_classes=3, generator=torch.Generator().manual_seed(0))
    lam, perm = out.lam, out.permutation
    assert 0.0 <= lam <= 1.0
    assert sorted(perm.tolist()) == [0, 1, 2, 3]
    a_mix, none, v_mix = out.inputs
    assert none is None
    torch.testing.assert_close(a_mix, lam * audio + (1 - lam) * audio[perm])
    torch.testing.assert_close(v_mix, lam * video + (1 - lam) * video[perm])
    onehot = F.one_hot(y, 3).float()
    torch.testing.assert_close(out.targets, lam * onehot + (1 - lam) * onehot[perm])
    torch.testing.assert_close(out.targets.sum(dim=1), torch.ones(4))
    # soft-target cross-entropy is the lambda-mix of the two hard losses
    logits = {"audio": torch.randn(4, 3)}
    mixed, _ = classification_loss(logits, out.targets, multi_label=False)
    l1 = F.cross_entropy(logits["audio"], y)
    l2 = F.cross_entropy(logits["audio"], y[perm])
    assert mixed.item() == pytest.approx((lam * l1 + (1 - lam) * l2).item(), rel=1e-5)


def test_mixup_is_reproducible_and_alpha_zero_is_identity():
    x = torch.randn(6, 2)
    y = (torch.rand(6, 5) > 0.5).float()
    o1 = mixup([x], y, alpha=1.0, generator=torch.Generator().manual_seed(7))
    o2 = mixup([x], y, alpha=1.0, generator=torch.Generator().manual_seed(7))
    assert o1.lam == o2.lam and torch.equal(o1.permutation, o2.permutation)
    torch.testing.assert_close(o1.targets, o1.lam * y + (1 - o1.lam) * y[o1.permutation])
    o0 = mixup([x], y, alpha=0.0, generator=torch.Generator().manual_seed(7))
    assert o0.lam == 1.0
    torch.testing.assert_close(o0.inputs[0], x)
    torch.testing.assert_close(o0.targets, y)
    lams = [mixup([x], y, alpha=0.2, generator=torch.Generator().manual_seed(s)).lam for s in range(200)]
    # Beta(0.2, 0.2) is U-shaped: most draws are near 0 or 1, mean 0.5
    assert 0.35 < sum(lams) / len(lams) < 0.65
    assert sum(1 for v in lams if v < 0.1 or v > 0.9) > 100


def test_mixup_errors():
    x = torch.randn(4, 2)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="num_classes"):
        mixup([x], y, alpha=0.5)
    with pytest.raises(ValueError, match="leading batch dimension 4"):
        mixup([x[:3]], y, alpha=0.5, num_classes=3)
    with pytest.raises(TypeError, match="floating-point"):
        mixup([x.long()], y, alpha=0.5, num_classes=3)
    with pytest.raises(ValueError, match="alpha"):
        mixup([x], y, alpha=-1.0, num_classes=3)
    with pytest.raises(TypeError, match="sequence"):
        mixup(x, y, alpha=0.5, num_classes=3)


# --------------------------------------------------------------------------- batch standardisation


def test_batch_standardize_uses_batch_stats_in_training_and_running_stats_in_eval():
    from zorro.heads import BatchStandardize

    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(50, 4, generator=g)
    bs = BatchStandardize(4, momentum=1.0)
    y = bs(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    torch.testing.assert_close(bs.running_mean, x.mean(0))
    torch.testing.assert_close(bs.running_var, x.var(0))  # unbiased, as nn.BatchNorm1d keeps it
    bs.eval()
    one = bs(x[:1])  # a single clip in eval mode is standardised with the running statistics
    torch.testing.assert_close(one, (x[:1] - x.mean(0)) / torch.sqrt(x.var(0) + 1e-5))
    assert bs(x.bfloat16()).dtype == torch.float32
    with pytest.raises(ValueError, match="expected"):
        bs(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="momentum"):
        BatchStandardize(4, momentum=0.0)


def test_batch_norm_head_restores_the_gradient_of_near_identical_embeddings():
    # At initialisation a transformer's pooled outputs are nearly the same vector for every
    # clip; InfoNCE's gradient is then a difference of near-equal vectors and nearly vanishes.
    g = torch.Generator().manual_seed(0)
    common = torch.randn(1, 32, generator=g)
    emb = {k: (common + 0.01 * torch.randn(16, 32, generator=g)).requires_grad_(True) for k in ("audio", "video")}
    norms = {}
    for batch_norm in (False, True):
        torch.manual_seed(0)
        head = ContrastiveHead(32, 8, names=("audio", "video"), batch_norm=batch_norm)
        z = head(emb)
        for t in emb.values():
            t.grad = None
        info_nce(z["audio"], z["video"], head.logit_scale()).backward()
        norms[batch_norm] = float(emb["audio"].grad.norm())
    assert norms[True] > 50 * norms[False], norms
