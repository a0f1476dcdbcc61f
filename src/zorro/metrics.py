"""Evaluation metrics: top-k accuracy, multi-label mAP, cross-modal retrieval recall, confusion matrix,
and the published datasets' protocols.

All functions take torch tensors (any device), compute in float64 on the CPU where it
matters for exactness, and return Python floats (fractions in ``[0, 1]``) or tensors.
:func:`evaluate_heads` reports every classifier head and their averaged logits.

Dataset protocols (:func:`dataset_metrics`): AudioSet mAP over the classes with at least one
positive in the evaluation set (the number excluded is reported), mAUC and d-prime;
VGGSound top-1, top-5 and mAP; Kinetics-Sounds top-1/top-5; ESC-50 accuracy per fold,
summarised over the five folds by :func:`fold_summary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from zorro.heads import average_logits

__all__ = [
    "topk_accuracy",
    "average_precision_per_class",
    "mean_average_precision",
    "retrieval_recall",
    "bidirectional_retrieval_recall",
    "confusion_matrix",
    "evaluate_heads",
    "roc_auc_per_class",
    "d_prime",
    "multilabel_metrics",
    "single_label_metrics",
    "dataset_metrics",
    "fold_summary",
    "PROTOCOLS",
]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _check_ks(ks: Sequence[int], limit: int, what: str, limit_name: str) -> tuple[int, ...]:
    if isinstance(ks, int):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError(f"{what}: ks must contain at least one k")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"{what}: every k must be a positive int, got {k!r}")
        if k > limit:
            raise ValueError(f"{what}: k={k} is larger than the {limit_name} ({limit}); expected k <= {limit}")
    return ks


def _check_float_2d(x: torch.Tensor, name: str, what: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: {name} must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{what}: {name} must be floating point, got {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{what}: {name} must be 2-D, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what}: {name} contains NaN or infinite values")


def _check_labels(y: torch.Tensor, n: int, name: str, what: str) -> None:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{what}: {name} must be a tensor, got {type(y).__name__}")
    if y.dtype not in _INT_DTYPES:
        raise TypeError(f"{what}: {name} must be integer class indices, got {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"{what}: {name} must have shape ({n},), got {tuple(y.shape)}")


def topk_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Args:
        logits: ``(N, C)`` float scores (logits or probabilities).
        targets: ``(N,)`` integer class indices in ``[0, C)``.
        ks: the ``k`` values, each in ``[1, C]``.

    Returns:
        dict ``"top{k}" -> fraction in [0, 1]``.

    Raises:
        ValueError: shape mismatch, empty input, ``k`` outside ``[1, C]``, class index out of range.
        TypeError: non-float logits or non-integer targets.
    """
    _check_float_2d(logits, "logits", "topk_accuracy")
    n, c = logits.shape
    if n == 0:
        raise ValueError("topk_accuracy: empty input (N = 0)")
    _check_labels(targets, n, "targets", "topk_accuracy")
    if bool(((targets < 0) | (targets >= c)).any()):
        raise ValueError(f"topk_accuracy: targets must be class indices in [0, {c})")
    ks = _check_ks(ks, c, "topk_accuracy", "number of classes")
    top = logits.topk(max(ks), dim=1).indices  # (N, kmax)
    hit = top == targets.to(top.device).long().unsqueeze(1)
    return {f"top{k}": float(hit[:, :k].any(dim=1).double().mean()) for k in ks}


def average_precision_per_class(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Average precision of each class (area under the step-wise precision-recall curve).

    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the distinct score thresholds in decreasing
    order (tied scores form a single threshold), the definition of scikit-learn's
    ``average_precision_score``.

    Args:
        scores: ``(N, C)`` float scores, higher means more likely positive.
        targets: ``(N, C)`` binary labels (bool, int or float 0/1).

    Returns:
        ``(C,)`` float64 tensor; ``NaN`` for classes without any positive.

    Raises:
        ValueError: shape mismatch, empty input, non-finite scores, non-binary targets.
        TypeError: non-float scores.
    """
    _check_float_2d(scores, "scores", "average_precision_per_class")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"average_precision_per_class: targets must be a tensor, got {type(targets).__name__}")
    if targets.shape != scores.shape:
        raise ValueError(
            f"average_precision_per_class: targets must have the shape of scores {tuple(scores.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    n = scores.shape[0]
    if n == 0:
        raise ValueError("average_precision_per_class: empty input (N = 0)")
    y = targets.detach().cpu()
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("average_precision_per_class: targets must be binary (0/1)")
    s = scores.detach().cpu().double()
    y = y.double()

    s_sorted, order = s.sort(dim=0, descending=True, stable=True)
    y_sorted = y.gather(0, order)
    tp = y_sorted.cumsum(dim=0)  # (N, C)
    ranks = torch.arange(1, n + 1, dtype=torch.float64).unsqueeze(1)
    precision = tp / ranks
    # Each row takes the precision at the last row of its tie group (one threshold per group).
    last_of_group = torch.ones_like(s_sorted, dtype=torch.bool)
    last_of_group[:-1] = s_sorted[1:] != s_sorted[:-1]
    row = torch.arange(n).unsqueeze(1).expand(n, s.shape[1])
    idx = torch.where(last_of_group, row, torch.full_like(row, n))
    group_end = idx.flip(0).cummin(dim=0).values.flip(0)
    group_precision = precision.gather(0, group_end)
    positives = y.sum(dim=0)
    ap = (y_sorted * group_precision).sum(dim=0) / positives
    return torch.where(positives > 0, ap, torch.full_like(ap, float("nan")))


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Multi-label mean average precision: the mean over classes with at least one positive.

    Args:
        scores: ``(N, C)`` float scores (logits or probabilities; only their order matters).
        targets: ``(N, C)`` binary labels.

    Returns:
        mAP as a fraction in ``[0, 1]``.

    Raises:
        ValueError: as :func:`average_precision_per_class`, or no class has a positive.
        TypeError: non-float scores.
    """
    ap = average_precision_per_class(scores, targets)
    valid = ~torch.isnan(ap)
    if not bool(valid.any()):
        raise ValueError("mean_average_precision: no class has a positive target; mAP is undefined")
    return float(ap[valid].mean())


def retrieval_recall(
    query: torch.Tensor,
    gallery: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    query_labels: torch.Tensor | None = None,
    gallery_labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """Recall@k of retrieving ``gallery`` items with ``query`` items by cosine similarity.

    * Instance level (no labels): query ``i`` matches gallery item ``i`` only
      (``N_q == N_g`` required).
    * Class level (both label tensors): query ``i`` matches every gallery item with the same
      label; queries whose label is absent from the gallery are excluded.

    A query counts as correct at ``k`` when a match is among its ``k`` nearest gallery items.
    Ties are resolved pessimistically: non-matches with a similarity equal to the best
    match's rank before it (so collapsed, all-equal embeddings do not score).

    Args:
        query: ``(N_q, D)`` float embeddings (normalised here; any scale is fine).
        gallery: ``(N_g, D)`` float embeddings of the other modality.
        ks: ``k`` values, each in ``[1, N_g]``.
        query_labels: ``(N_q,)`` integer labels, for class-level retrieval.
        gallery_labels: ``(N_g,)`` integer labels, for class-level retrieval.

    Returns:
        dict ``"R@{k}" -> fraction in [0, 1]`` of the (eligible) queries.

    Raises:
        ValueError: shape mismatch, only one of the label tensors given, ``k`` larger than the
            gallery, no query with a match.
        TypeError: non-float embeddings or non-integer labels.
    """
    what = "retrieval_recall"
    _check_float_2d(query, "query", what)
    _check_float_2d(gallery, "gallery", what)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"{what}: query and gallery must have the same width D, got {query.shape[1]} and {gallery.shape[1]}"
        )
    nq, ng = query.shape[0], gallery.shape[0]
    if nq == 0 or ng == 0:
        raise ValueError(f"{what}: empty query ({nq}) or gallery ({ng})")
    ks = _check_ks(ks, ng, what, "gallery size")
    if (query_labels is None) != (gallery_labels is None):
        raise ValueError(
            f"{what}: give both query_labels and gallery_labels (class level) or neither (instance level)"
        )
    if query_labels is None:
        if nq != ng:
            raise ValueError(
                f"{what}: instance-level retrieval needs paired query/gallery (N_q == N_g), got {nq} and {ng}"
            )
        match = torch.eye(nq, dtype=torch.bool)
    else:
        _check_labels(query_labels, nq, "query_labels", what)
        _check_labels(gallery_labels, ng, "gallery_labels", what)
        ql, gl = query_labels.detach().cpu().long(), gallery_labels.detach().cpu().long()
        match = ql.unsqueeze(1) == gl.unsqueeze(0)

    q = F.normalize(query.detach().cpu().double(), dim=1)
    g = F.normalize(gallery.detach().cpu().double(), dim=1)
    sim = q @ g.T  # (N_q, N_g)
    eligible = match.any(dim=1)
    if not bool(eligible.any()):
        raise ValueError(f"{what}: no query has a matching gallery item; recall is undefined")
    best_match = sim.masked_fill(~match, float("-inf")).max(dim=1).values
    # Pessimistic rank (0-based) of the best match: non-matches scoring at least as high.
    rank = ((sim >= best_match.unsqueeze(1)) & ~match).sum(dim=1)
    rank = rank[eligible]
    return {f"R@{k}": float((rank < k).double().mean()) for k in ks}


def bidirectional_retrieval_recall(
    a: torch.Tensor,
    b: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    *,
    labels: torch.Tensor | None = None,
    names: tuple[str, str] = ("audio", "video"),
) -> dict[str, float]:
    """Retrieval recall in both directions between paired embeddings ``a`` and ``b``.

    Args:
        a: ``(N, D)`` float embeddings of the first modality.
        b: ``(N, D)`` float embeddings of the second modality, paired row by row with ``a``.
        ks: ``k`` values, each in ``[1, N]``.
        labels: ``(N,)`` integer labels of the pairs for class-level retrieval; ``None`` for
            instance-level retrieval.
        names: names of the two modalities, used in the keys.

    Returns:
        dict ``"{names[0]}2{names[1]}/R@{k}"`` and ``"{names[1]}2{names[0]}/R@{k}"`` -> fraction.

    Raises:
        ValueError, TypeError: as :func:`retrieval_recall`.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"bidirectional_retrieval_recall: a and b must be paired (same N), got {a.shape[0]} and {b.shape[0]}"
        )
    out: dict[str, float] = {}
    for (qn, q), (gn, g) in (((names[0], a), (names[1], b)), ((names[1], b), (names[0], a))):
        r = retrieval_recall(q, g, ks, query_labels=labels, gallery_labels=labels)
        out.update({f"{qn}2{gn}/{k}": v for k, v in r.items()})
    return out


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion matrix with rows = true class and columns = predicted class.

    Args:
        preds: ``(N,)`` integer predicted classes in ``[0, num_classes)``.
        targets: ``(N,)`` integer true classes in ``[0, num_classes)``.
        num_classes: number of classes ``C``.

    Returns:
        ``(C, C)`` int64 tensor of counts; entry ``[t, p]`` counts samples of class ``t``
        predicted as ``p``.

    Raises:
        ValueError: shape mismatch, index out of range, non-positive ``num_classes``.
        TypeError: non-integer inputs.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"confusion_matrix: num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(preds, torch.Tensor):
        raise TypeError(f"confusion_matrix: preds must be a tensor of class indices, got {type(preds).__name__}")
    if preds.ndim != 1:
        raise ValueError(f"confusion_matrix: preds must have shape (N,), got {tuple(preds.shape)}")
    _check_labels(preds, preds.shape[0], "preds", "confusion_matrix")
    _check_labels(targets, preds.shape[0], "targets", "confusion_matrix")
    p, t = preds.detach().cpu().long(), targets.detach().cpu().long()
    for name, x in (("preds", p), ("targets", t)):
        if x.numel() and bool(((x < 0) | (x >= num_classes)).any()):
            raise ValueError(f"confusion_matrix: {name} must be in [0, {num_classes})")
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def evaluate_heads(
    logits: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    multi_label: bool,
    ks: Sequence[int] = (1, 5),
) -> dict[str, dict[str, float]]:
    """Metrics of each classifier head and of their averaged logits.

    Args:
        logits: dict head name -> ``(N, C)`` logits (e.g. from :class:`zorro.heads.ClassifierHeads`).
        targets: ``(N,)`` integer classes (single label) or ``(N, C)`` binary labels (multi label).
        multi_label: report ``{"mAP"}`` instead of top-k accuracy.
        ks: top-k values for single-label evaluation (``k`` larger than ``C`` is dropped).

    Returns:
        dict head name (and ``"average"``) -> dict metric name -> fraction in ``[0, 1]``.

    Raises:
        ValueError, TypeError: as the underlying metrics / :func:`zorro.heads.average_logits`.
    """
    avg = average_logits(logits)
    entries = {k: v for k, v in logits.items() if v is not None}
    entries["average"] = avg
    out: dict[str, dict[str, float]] = {}
    for name, x in entries.items():
        x = x.detach().float()
        if multi_label:
            out[name] = {"mAP": mean_average_precision(x, targets)}
        else:
            usable = tuple(k for k in ks if k <= x.shape[1]) or (1,)
            out[name] = topk_accuracy(x, targets, usable)
    return out


# ---------------------------------------------------------------------------- dataset protocols

def _registry():
    from zorro.data import registry  # noqa: PLC0415

    return registry


#: datasets whose evaluation protocol :func:`dataset_metrics` knows: every dataset of
#: :mod:`zorro.data.registry` (each module declares its protocol)
PROTOCOLS = _registry().names()


def _check_binary_targets(scores: torch.Tensor, targets: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    _check_float_2d(scores, "scores", what)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{what}: targets must be a tensor, got {type(targets).__name__}")
    if targets.shape != scores.shape:
        raise ValueError(f"{what}: targets must have the shape of scores {tuple(scores.shape)}, got {tuple(targets.shape)}")
    if scores.shape[0] == 0:
        raise ValueError(f"{what}: empty input (N = 0)")
    y = targets.detach().cpu()
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError(f"{what}: targets must be binary (0/1)")
    return scores.detach().cpu().double(), y.double()


def roc_auc_per_class(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve of each class (tied scores count one half, as scikit-learn's
    ``roc_auc_score``): the probability that a random positive scores above a random negative.

    Args:
        scores: ``(N, C)`` float scores.
        targets: ``(N, C)`` binary labels.

    Returns:
        ``(C,)`` float64 tensor; ``NaN`` for a class without positives or without negatives.

    Raises:
        ValueError: shape mismatch, empty input, non-finite scores, non-binary targets.
        TypeError: non-float scores.
    """
    s, y = _check_binary_targets(scores, targets, "roc_auc_per_class")
    n = s.shape[0]
    order = s.argsort(dim=0, stable=True)
    s_sorted = s.gather(0, order)
    # average 1-based rank of each tie group (Mann-Whitney U with mid-ranks)
    new_group = torch.ones_like(s_sorted, dtype=torch.bool)
    new_group[1:] = s_sorted[1:] != s_sorted[:-1]
    row = torch.arange(n).unsqueeze(1).expand_as(s_sorted)
    first = torch.where(new_group, row, torch.zeros_like(row)).cummax(dim=0).values  # first row of the group
    last_marker = torch.ones_like(new_group)
    last_marker[:-1] = new_group[1:]
    last = torch.where(last_marker, row, torch.full_like(row, n)).flip(0).cummin(dim=0).values.flip(0)
    mid_rank = (first + last).double() / 2 + 1
    ranks = torch.empty_like(mid_rank).scatter_(0, order, mid_rank)
    pos = y.sum(dim=0)
    neg = n - pos
    auc = ((ranks * y).sum(dim=0) - pos * (pos + 1) / 2) / (pos * neg)
    return torch.where((pos > 0) & (neg > 0), auc, torch.full_like(auc, float("nan")))


def d_prime(auc: float) -> float:
    """Sensitivity index of an ROC AUC under the equal-variance Gaussian model:
    ``sqrt(2) * Phi^-1(auc)`` (``Phi^-1`` the standard normal quantile); 0 at chance.

    Raises:
        ValueError: ``auc`` outside ``[0, 1]``.
    """
    if not 0.0 <= float(auc) <= 1.0:
        raise ValueError(f"d_prime: auc must be in [0, 1], got {auc!r}")
    return float(math.sqrt(2.0) * torch.special.ndtri(torch.tensor(float(auc), dtype=torch.float64)))


def multilabel_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float | int]:
    """AudioSet's protocol: mAP, mAUC and d-prime over the classes the evaluation set can judge.

    The mean AP is taken over the classes with at least one positive clip (a class without
    positives has no defined AP; scikit-learn's value for it differs between versions), the
    mean AUC over the classes with at least one positive and one negative; d-prime is
    :func:`d_prime` of the mean AUC.

    Args:
        scores: ``(N, C)`` float scores (logits or probabilities).
        targets: ``(N, C)`` binary labels.

    Returns:
        ``{"mAP", "mAUC", "d_prime"}`` (floats), ``"num_classes"``, ``"num_classes_ap"`` (classes
        averaged into mAP), ``"num_classes_excluded"`` (classes without a positive) and
        ``"num_classes_auc"`` (ints). ``mAUC``/``d_prime`` are NaN when no class has both.

    Raises:
        ValueError: as :func:`average_precision_per_class`, or no class has a positive.
        TypeError: non-float scores.
    """
    ap = average_precision_per_class(scores, targets)
    valid = ~torch.isnan(ap)
    if not bool(valid.any()):
        raise ValueError("multilabel_metrics: no class has a positive target; mAP is undefined")
    auc = roc_auc_per_class(scores, targets)
    auc_valid = ~torch.isnan(auc)
    mauc = float(auc[auc_valid].mean()) if bool(auc_valid.any()) else float("nan")
    return {
        "mAP": float(ap[valid].mean()),
        "mAUC": mauc,
        "d_prime": d_prime(mauc) if not math.isnan(mauc) else float("nan"),
        "num_classes": int(ap.numel()),
        "num_classes_ap": int(valid.sum()),
        "num_classes_excluded": int((~valid).sum()),
        "num_classes_auc": int(auc_valid.sum()),
    }


def single_label_metrics(logits: torch.Tensor, targets: torch.Tensor, *, ks: Sequence[int] = (1, 5), with_map: bool = False) -> dict[str, float | int]:
    """Top-k accuracy of single-label predictions, optionally with one-vs-rest mAP (VGGSound).

    Args:
        logits: ``(N, C)`` float scores.
        targets: ``(N,)`` integer classes.
        ks: top-k values; those larger than ``C`` are dropped.
        with_map: add ``"mAP"`` (each class's AP against the one-hot targets, averaged over
            the classes present in ``targets``) and ``"num_classes_excluded"``.

    Returns:
        ``{"top1": ..., "top5": ..., ["mAP", "num_classes_excluded"]}``.

    Raises:
        ValueError, TypeError: as :func:`topk_accuracy`.
    """
    _check_float_2d(logits, "logits", "single_label_metrics")
    usable = tuple(k for k in (ks if not isinstance(ks, int) else (ks,)) if k <= logits.shape[1]) or (1,)
    out: dict[str, float | int] = dict(topk_accuracy(logits, targets, usable))
    if with_map:
        onehot = F.one_hot(targets.detach().cpu().long(), logits.shape[1])
        ap = average_precision_per_class(logits, onehot)
        valid = ~torch.isnan(ap)
        out["mAP"] = float(ap[valid].mean())
        out["num_classes_excluded"] = int((~valid).sum())
    return out


def dataset_metrics(protocol: str, scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float | int]:
    """The metrics a dataset's papers report, as its registry module declares them
    (:class:`zorro.data.registry.Protocol`).

    Args:
        protocol: a dataset name of :data:`PROTOCOLS`: ``"audioset"``
            (:func:`multilabel_metrics`: mAP, mAUC, d-prime), ``"vggsound"`` (top-1, top-5,
            mAP), ``"kinetics-sounds"`` (top-1, top-5), ``"esc50"`` and ``"urbansound8k"``
            (top-1 of one fold; combine folds with :func:`fold_summary`).
        scores: ``(N, C)`` float scores.
        targets: ``(N, C)`` binary labels (multi-label protocols) or ``(N,)`` integer classes.

    Returns:
        dict metric name -> value.

    Raises:
        ValueError: an unknown protocol, or as the underlying metric.
    """
    registry = _registry()
    if protocol not in registry.names():
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {registry.names()}")
    spec = registry.get(protocol).protocol
    if spec.metrics == "multi_label":
        return multilabel_metrics(scores, targets)
    return single_label_metrics(scores, targets, ks=spec.ks, with_map=spec.with_map)


def fold_summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean and standard deviation of a metric over cross-validation folds (ESC-50: five).

    ``std`` is the sample standard deviation (``ddof=1``); with one fold it is 0.

    Args:
        values: the metric of each fold, in fold order.

    Returns:
        ``{"mean": float, "std": float, "folds": [values...], "num_folds": int}``.

    Raises:
        ValueError: no value, or a non-finite value.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("fold_summary: no fold value")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"fold_summary: non-finite fold value in {vals}")
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "folds": vals, "num_folds": len(vals)}
