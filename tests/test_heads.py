import math

import pytest
import torch

from zorro.heads import (
    MULTIMODAL_NAMES,
    OUTPUT_NAMES,
    ClassifierHeads,
    ContrastiveHead,
    average_logits,
)


def _embeddings(batch=3, dim=8, names=OUTPUT_NAMES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, dim, generator=g) for n in names}


def test_output_names_follow_token_types():
    assert OUTPUT_NAMES == ("audio", "video", "fusion", "global")
    assert MULTIMODAL_NAMES == ("fusion", "global")


@pytest.mark.parametrize("hidden_dim", [None, 16])
def test_contrastive_head_projects_and_normalises(hidden_dim):
    head = ContrastiveHead(8, 4, hidden_dim=hidden_dim)
    out = head(_embeddings())
    assert set(out) == set(OUTPUT_NAMES)
    assert out["audio"].shape == (3, 4) and out["video"].shape == (3, 4)
    assert out["fusion"].shape == (3, 8) and out["global"].shape == (3, 8)
    for z in out.values():
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))


def test_contrastive_head_skips_missing_and_ignores_unknown():
    head = ContrastiveHead(8, 4)
    emb = _embeddings(names=("audio",))
    emb["something_else"] = torch.randn(3, 5)
    assert set(head(emb)) == {"audio"}
    with pytest.raises(ValueError, match="none of the expected outputs"):
        head({"other": torch.randn(3, 8)})


def test_contrastive_head_bad_inputs():
    head = ContrastiveHead(8, 4)
    with pytest.raises(ValueError, match=r"shape \(B, 8\)"):
        head({"audio": torch.randn(3, 7)})
    with pytest.raises(ValueError, match="batch size"):
        head({"audio": torch.randn(3, 8), "video": torch.randn(2, 8)})
    with pytest.raises(TypeError, match="floating point"):
        head({"audio": torch.ones(3, 8, dtype=torch.long)})
    with pytest.raises(TypeError):
        head([torch.randn(3, 8)])
    with pytest.raises(ValueError, match="proj_dim"):
        ContrastiveHead(8, 0)
    with pytest.raises(ValueError, match="fixed_temperature"):
        ContrastiveHead(8, 4, fixed_temperature=0.0)


def test_logit_scale_init_and_gradient():
    head = ContrastiveHead(8, 4)
    assert head.learnable_temperature
    assert head.log_logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert head.logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    assert head.temperature == pytest.approx(0.07, rel=1e-6)
    head.logit_scale().backward()
    # d exp(x) / dx = exp(x)
    assert head.log_logit_scale.grad.item() == pytest.approx(1 / 0.07, rel=1e-6)


def test_logit_scale_clamp():
    head = ContrastiveHead(8, 4)
    with torch.no_grad():
        head.log_logit_scale.fill_(10.0)  # e^10 >> 100
    assert head.logit_scale().item() == pytest.approx(100.0, rel=1e-6)
    head.clamp_logit_scale_()
    assert head.log_logit_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)
    # At the boundary the gradient still flows, so the scale can come back down.
    head.logit_scale().backward()
    assert head.log_logit_scale.grad.item() == pytest.approx(100.0, rel=1e-5)
    custom = ContrastiveHead(8, 4, max_logit_scale=20.0)
    assert custom.logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        custom.log_logit_scale.fill_(5.0)
    assert custom.logit_scale().item() == pytest.approx(20.0, rel=1e-6)


def test_fixed_temperature_is_not_trained():
    head = ContrastiveHead(8, 4, fixed_temperature=0.05)
    assert not head.learnable_temperature
    assert "log_logit_scale" not in dict(head.named_parameters())
    assert "log_logit_scale" in head.state_dict()
    assert head.logit_scale().item() == pytest.approx(20.0, rel=1e-6)
    assert not head.logit_scale().requires_grad
    head.clamp_logit_scale_()  # no-op
    assert head.temperature == pytest.approx(0.05, rel=1e-6)


def test_classifier_heads_shapes_and_missing_keys():
    heads = ClassifierHeads(8, 5)
    out = heads(_embeddings())
    assert set(out) == set(OUTPUT_NAMES)
    assert all(v.shape == (3, 5) for v in out.values())
    partial = heads(_embeddings(names=("audio", "global")))
    assert set(partial) == {"audio", "global"}
    # Each head is independent: perturbing the video embedding leaves the audio logits alone.
    emb = _embeddings()
    base = heads(emb)
    emb["video"] = emb["video"] + torch.linspace(-1.0, 1.0, 8)
    again = heads(emb)
    torch.testing.assert_close(again["audio"], base["audio"])
    assert not torch.allclose(again["video"], base["video"])


def test_classifier_heads_structure_and_errors():
    heads = ClassifierHeads(8, 5, names=("fusion",))
    head = heads.heads["fusion"]
    assert isinstance(head[0], torch.nn.LayerNorm) and isinstance(head[-1], torch.nn.Linear)
    with pytest.raises(ValueError, match="none of the expected outputs"):
        heads(_embeddings(names=("audio",)))
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierHeads(8, 0)
    with pytest.raises(ValueError, match="unique"):
        ClassifierHeads(8, 3, names=("audio", "audio"))


def test_average_logits():
    logits = {"audio": torch.tensor([[1.0, 2.0]]), "video": torch.tensor([[3.0, 0.0]]), "fusion": None}
    torch.testing.assert_close(average_logits(logits), torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(average_logits(logits, names=("video", "global")), torch.tensor([[3.0, 0.0]]))
    with pytest.raises(ValueError, match="no logits"):
        average_logits({})
    with pytest.raises(ValueError, match="shape"):
        average_logits({"audio": torch.zeros(1, 2), "video": torch.zeros(1, 3)})
