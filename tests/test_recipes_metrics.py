"""Dataset evaluation protocols: AudioSet mAP/mAUC/d-prime, VGGSound, Kinetics-Sounds, ESC-50 folds."""

from __future__ import annotations

import math

import pytest
import torch

from zorro.metrics import (
    d_prime,
    dataset_metrics,
    fold_summary,
    multilabel_metrics,
    roc_auc_per_class,
    single_label_metrics,
)


def test_roc_auc_hand_example():
    # class 0: positives score 0.9, 0.4; negatives 0.6, 0.1 -> 3 of 4 pairs ordered -> 0.75
    # class 1: a tie between a positive and a negative counts one half: (1 + 0.5) / 2 = 0.75
    scores = torch.tensor([[0.9, 0.5], [0.4, 0.5], [0.6, 0.2], [0.1, 0.9]])
    targets = torch.tensor([[1, 1], [1, 0], [0, 0], [0, 0]])
    # class 1: positive 0.5 vs negatives 0.5 (tie, 1/2), 0.2 (1), 0.9 (0) -> 1.5 / 3 = 0.5
    auc = roc_auc_per_class(scores, targets)
    assert auc.tolist() == [0.75, 0.5]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_sklearn_with_ties(seed):
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (80, 7), generator=g).double()  # many ties
    targets = (torch.rand(80, 7, generator=g) < 0.3).long()
    targets[:, 6] = 1  # no negative -> undefined
    ours = roc_auc_per_class(scores, targets)
    for c in range(6):
        assert ours[c].item() == pytest.approx(sk.roc_auc_score(targets[:, c].numpy(), scores[:, c].numpy()), abs=1e-12)
    assert math.isnan(ours[6].item())


def test_d_prime_values():
    assert d_prime(0.5) == 0.0
    # sqrt(2) * Phi^-1(0.8413447) = sqrt(2) * 1.0
    assert d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2.0), rel=1e-9)
    assert d_prime(0.25) == pytest.approx(-d_prime(0.75))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d_prime(1.5)


def test_audioset_protocol_excludes_classes_without_positives_and_says_how_many():
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(60, 5, generator=g)
    targets = (torch.rand(60, 5, generator=g) < 0.25).long()
    targets[:, 3] = 0  # no positive in the evaluation set
    out = multilabel_metrics(scores, targets)
    kept = [0, 1, 2, 4]
    ap = [sk.average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in kept]
    auc = [sk.roc_auc_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in kept]
    assert out["mAP"] == pytest.approx(sum(ap) / 4, abs=1e-12)
    assert out["mAUC"] == pytest.approx(sum(auc) / 4, abs=1e-12)
    assert out["d_prime"] == pytest.approx(d_prime(sum(auc) / 4))
    assert (out["num_classes"], out["num_classes_ap"], out["num_classes_excluded"], out["num_classes_auc"]) == (5, 4, 1, 4)
    assert dataset_metrics("audioset", scores, targets) == out
    with pytest.raises(ValueError, match="no class has a positive"):
        multilabel_metrics(scores, torch.zeros_like(targets))


def test_vggsound_and_kinetics_protocols():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0],
                           [0.0, 3.0, 2.0, 1.0, -1.0, -2.0],
                           [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    targets = torch.tensor([0, 2, 0])
    vgg = dataset_metrics("vggsound", logits, targets)
    assert vgg["top1"] == pytest.approx(1 / 3) and vgg["top5"] == pytest.approx(2 / 3)
    # class 0 column (3, 0, 0), positives rows 0 and 2: precision 1 at 3.0, then 2/3 at the tied 0.0
    # -> AP (1 + 2/3) / 2; class 2 column (1, 2, 2), positive row 1 tied with a negative -> 1/2
    assert vgg["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    assert vgg["num_classes_excluded"] == 4
    ks = dataset_metrics("kinetics-sounds", logits, targets)
    assert set(ks) == {"top1", "top5"}
    assert dataset_metrics("esc50", logits, targets) == {"top1": pytest.approx(1 / 3)}
    assert single_label_metrics(logits[:, :3], targets) == {"top1": pytest.approx(1 / 3)}  # top5 > C dropped
    with pytest.raises(ValueError, match="unknown evaluation protocol"):
        dataset_metrics("ucf101", logits, targets)


def test_fold_summary():
    out = fold_summary([0.8, 0.9, 0.85, 0.75, 0.7])
    assert out["mean"] == pytest.approx(0.8)
    assert out["std"] == pytest.approx(math.sqrt(0.025 / 4))  # sample std, ddof=1
    assert out["num_folds"] == 5 and out["folds"] == [0.8, 0.9, 0.85, 0.75, 0.7]
    assert fold_summary([0.5])["std"] == 0.0
    with pytest.raises(ValueError):
        fold_summary([])
    with pytest.raises(ValueError):
        fold_summary([0.5, float("nan")])
