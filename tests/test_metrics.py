import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from zorro.metrics import (
    average_precision_per_class,
    bidirectional_retrieval_recall,
    confusion_matrix,
    evaluate_heads,
    mean_average_precision,
    retrieval_recall,
    topk_accuracy,
)


# --------------------------------------------------------------------------- top-k


def test_topk_accuracy_hand_example():
    logits = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # target 0: rank 1
            [0.95, 0.9, 0.8, 0.7, 0.6, 0.5],  # target 5: rank 6 -> miss at 5
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # target 1: rank 5
            [0.5, 0.4, 0.9, 0.0, 0.0, 0.0],  # target 1: rank 3
        ]
    )
    targets = torch.tensor([0, 5, 1, 1])
    out = topk_accuracy(logits, targets, ks=(1, 3, 5, 6))
    assert out == {"top1": 0.25, "top3": 0.5, "top5": 0.75, "top6": 1.0}
    assert set(topk_accuracy(logits, targets)) == {"top1", "top5"}


def test_topk_accuracy_errors():
    logits = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="k=5 is larger than the number of classes"):
        topk_accuracy(logits, y)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        topk_accuracy(logits, y[:2], ks=(1,))
    with pytest.raises(TypeError, match="integer"):
        topk_accuracy(logits, y.float(), ks=(1,))
    with pytest.raises(ValueError, match="class indices"):
        topk_accuracy(logits, torch.tensor([0, 1, 3, 0]), ks=(1,))
    with pytest.raises(ValueError, match="positive int"):
        topk_accuracy(logits, y, ks=(0,))


# --------------------------------------------------------------------------- mAP


def test_average_precision_hand_example():
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    targets = torch.tensor([[1], [0], [1], [0]])
    # positives at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert average_precision_per_class(scores, targets)[0].item() == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, c = 40, 7
    scores = rng.normal(size=(n, c))
    if seed == 1:
        scores = np.round(scores, 1)  # many ties
    targets = (rng.random((n, c)) < 0.3).astype(np.int64)
    targets[:, 3] = 0  # a class without positives is ignored
    targets[0, 0] = 1
    expected_per_class = [
        average_precision_score(targets[:, j], scores[:, j]) for j in range(c) if targets[:, j].any()
    ]
    s_t = torch.from_numpy(scores).float() if seed != 1 else torch.from_numpy(scores)
    ap = average_precision_per_class(s_t, torch.from_numpy(targets))
    assert torch.isnan(ap[3])
    np.testing.assert_allclose(ap[~torch.isnan(ap)].numpy(), expected_per_class, rtol=1e-6, atol=1e-6)
    got = mean_average_precision(s_t, torch.from_numpy(targets).bool())
    assert got == pytest.approx(float(np.mean(expected_per_class)), rel=1e-6)


def test_mean_average_precision_all_ties():
    scores = torch.zeros(4, 1)
    targets = torch.tensor([[1], [0], [0], [1]])
    # a single threshold: precision 2/4 at recall 1
    assert mean_average_precision(scores, targets) == pytest.approx(0.5)
    assert average_precision_score(targets.numpy()[:, 0], scores.numpy()[:, 0]) == pytest.approx(0.5)


def test_mean_average_precision_errors():
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(torch.randn(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="shape"):
        mean_average_precision(torch.randn(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="binary"):
        mean_average_precision(torch.randn(3, 2), torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision(torch.tensor([[float("nan")]]), torch.ones(1, 1))
    with pytest.raises(TypeError, match="floating point"):
        mean_average_precision(torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2))


# --------------------------------------------------------------------------- retrieval


def _unit(deg):
    r = torch.deg2rad(torch.tensor(deg, dtype=torch.float64))
    return torch.stack([torch.cos(r), torch.sin(r)], dim=1)


def test_instance_retrieval_constructed_example():
    # queries at 0, 90, 180, 270 degrees; gallery item i is the match of query i.
    query = _unit([0.0, 90.0, 180.0, 270.0])
    gallery = _unit([10.0, 160.0, 100.0, 280.0])
    # q0 nearest: g0 (10) -> rank 0
    # q1 (90): g2 (100, 10 deg away) before g1 (160, 70 deg away) -> rank 1
    # q2 (180): g1 (160, 20 deg) before g2 (100, 80 deg) -> rank 1
    # q3 (270): g3 (280) -> rank 0
    out = retrieval_recall(query, gallery, ks=(1, 2, 4))
    assert out == {"R@1": 0.5, "R@2": 1.0, "R@4": 1.0}
    # the other direction: g0 (10) -> q0 first; g1 (160): q2 (20 deg) before q1 (70 deg) -> rank 1;
    # g2 (100): q1 (10 deg) before q2 (80 deg) -> rank 1; g3 (280) -> q3 first
    back = retrieval_recall(gallery, query, ks=(1, 2))
    assert back == {"R@1": 0.5, "R@2": 1.0}
    both = bidirectional_retrieval_recall(query, gallery, ks=(1, 2))
    assert both == {"audio2video/R@1": 0.5, "audio2video/R@2": 1.0, "video2audio/R@1": 0.5, "video2audio/R@2": 1.0}
    # scale does not matter (cosine similarity)
    assert retrieval_recall(3 * query, gallery, ks=(1,)) == {"R@1": 0.5}


def test_class_retrieval_constructed_example():
    query = _unit([0.0, 90.0, 180.0])
    gallery = _unit([5.0, 95.0, 175.0, 60.0])
    q_labels = torch.tensor([0, 1, 2])
    g_labels = torch.tensor([1, 1, 2, 0])
    # q0 (label 0): neighbours 5(l1), 60(l0) -> correct at k=2
    # q1 (label 1): 95(l1) -> correct at k=1
    # q2 (label 2): 175(l2) -> correct at k=1
    out = retrieval_recall(query, gallery, ks=(1, 2), query_labels=q_labels, gallery_labels=g_labels)
    assert out["R@1"] == pytest.approx(2 / 3)
    assert out["R@2"] == 1.0
    # a query whose label is not in the gallery is excluded
    out = retrieval_recall(
        query, gallery, ks=(1,), query_labels=torch.tensor([0, 1, 7]), gallery_labels=g_labels
    )
    assert out["R@1"] == pytest.approx(1 / 2)


def test_retrieval_collapsed_embeddings_do_not_score():
    x = torch.ones(5, 3)
    assert retrieval_recall(x, x, ks=(1, 4, 5)) == {"R@1": 0.0, "R@4": 0.0, "R@5": 1.0}


def test_retrieval_errors():
    q = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"k=5 is larger than the gallery size \(4\)"):
        retrieval_recall(q, q)
    with pytest.raises(ValueError, match="same width"):
        retrieval_recall(q, torch.randn(4, 2), ks=(1,))
    with pytest.raises(ValueError, match="N_q == N_g"):
        retrieval_recall(q, torch.randn(5, 3), ks=(1,))
    with pytest.raises(ValueError, match="both"):
        retrieval_recall(q, q, ks=(1,), query_labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="floating point"):
        retrieval_recall(q.long(), q, ks=(1,))
    with pytest.raises(ValueError, match="no query has a matching"):
        retrieval_recall(
            q, q, ks=(1,), query_labels=torch.zeros(4, dtype=torch.long), gallery_labels=torch.ones(4, dtype=torch.long)
        )


# --------------------------------------------------------------------------- confusion matrix, evaluation


def test_confusion_matrix_matches_sklearn():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, size=50)
    p = rng.integers(0, 4, size=50)
    cm = confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), 4)
    np.testing.assert_array_equal(cm.numpy(), sk_confusion_matrix(t, p, labels=[0, 1, 2, 3]))
    assert cm.dtype == torch.int64 and cm.sum().item() == 50
    hand = confusion_matrix(torch.tensor([1, 1, 0]), torch.tensor([0, 1, 0]), 2)
    assert hand.tolist() == [[1, 1], [0, 1]]


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)


def test_evaluate_heads_reports_each_head_and_average():
    logits = {
        "audio": torch.tensor([[2.0, 0.0], [2.0, 0.0]]),
        "video": torch.tensor([[0.0, 1.0], [0.0, 3.0]]),
    }
    y = torch.tensor([0, 1])
    out = evaluate_heads(logits, y, multi_label=False)
    assert out["audio"] == {"top1": 0.5}
    assert out["video"] == {"top1": 0.5}
    # averaged logits: [[1, .5], [1, 1.5]] -> both right
    assert out["average"] == {"top1": 1.0}
    multi = evaluate_heads(logits, torch.tensor([[1, 0], [0, 1]]), multi_label=True)
    assert set(multi) == {"audio", "video", "average"}
    # average class 0 scores tie (1, 1) -> AP 1/2; class 1 scores (.5, 1.5) -> AP 1
    assert multi["average"]["mAP"] == pytest.approx(0.75)
    assert multi["audio"]["mAP"] == pytest.approx(0.5)  # all scores tie in both classes
