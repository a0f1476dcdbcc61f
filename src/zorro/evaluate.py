"""Evaluation of trained models: classification per output, unimodal inference, retrieval.

All functions run under ``torch.no_grad`` in eval mode and return plain dicts of floats
(fractions in ``[0, 1]``), ready for JSON.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

from zorro.fileio import atomic_write_text
from zorro.heads import average_logits
from zorro.metrics import bidirectional_retrieval_recall, confusion_matrix, evaluate_heads
from zorro.tasks import ZorroClassifier, ZorroPretrainer

logger = logging.getLogger(__name__)


#: The inputs a batch may carry, each with its ``has_<name>`` presence flags.
INPUTS = ("audio", "video")


def _batches(loader: Iterable[dict[str, Any]], device: torch.device):
    for batch in loader:
        if len(batch["label"]) == 0:
            continue
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _conditions(batch: dict[str, Any]) -> list[tuple[str, torch.Tensor, tuple[str, ...]]]:
    """``(condition, selected rows, inputs given)`` for one batch: ``both`` (the clips that
    have every input, given all of them), then ``<input>_only`` for each input alone."""
    flags = {name: batch[f"has_{name}"] for name in INPUTS if f"has_{name}" in batch}
    if not flags:
        return []
    every = torch.stack(list(flags.values())).all(0)
    return [("both", every, tuple(flags))] + [(f"{name}_only", flag, (name,)) for name, flag in flags.items()]


def _condition_order(name: str) -> int:
    order = ["both"] + [f"{m}_only" for m in INPUTS]
    return order.index(name) if name in order else len(order)


@torch.no_grad()
def collect_logits(model: ZorroClassifier, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Logits of every output under three input conditions.

    Returns a dict with, for each condition ``both`` (audio and video given), ``audio_only``
    and ``video_only`` that has clips, a dict output name -> ``(N, C)`` float logits, and
    ``<condition>_targets`` (``(N,)`` or ``(N, C)``). Clips lacking a modality contribute
    only to the conditions they can feed, so the unimodal conditions hold the clips that
    have that modality.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, list[torch.Tensor]]] = {}
    targets: dict[str, list[torch.Tensor]] = {}
    for batch in _batches(loader, device):
        for name, sel, given in _conditions(batch):
            if not bool(sel.any()):
                continue
            logits = model(**{m: batch[m][sel] for m in given})
            for head, x in logits.items():
                out.setdefault(name, {}).setdefault(head, []).append(x.float().cpu())
            targets.setdefault(name, []).append(batch["label"][sel].cpu())
    model.train(was_training)
    result: dict[str, Any] = {}
    for name in sorted(out, key=_condition_order):
        result[name] = {head: torch.cat(xs) for head, xs in out[name].items()}
        result[f"{name}_targets"] = torch.cat(targets[name])
    return result


def _evaluated(collected: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Every evaluated entry of :func:`classifier_metrics` as ``(logits, targets)``: each
    output given every input, their average, and for each ``<input>_only`` condition the
    input's own output (the average of what that input feeds when it has none)."""
    entries: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if "both" in collected:
        targets = collected["both_targets"]
        for head, x in collected["both"].items():
            entries[head] = (x, targets)
        entries["average"] = (average_logits(collected["both"]), targets)
    for cond in collected:
        if cond.endswith("_only") and not cond.endswith("_targets"):
            own = cond[: -len("_only")]
            logits = collected[cond]
            entries[cond] = (logits[own] if own in logits else average_logits(logits), collected[f"{cond}_targets"])
    return entries


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy (nats) of single-label logits."""
    return float(torch.nn.functional.cross_entropy(logits.double(), targets.long()))


def classifier_metrics(collected: Mapping[str, Any], *, multi_label: bool = False) -> dict[str, Any]:
    """The metrics :func:`evaluate_classifier` returns, from :func:`collect_logits`' output."""
    metrics: dict[str, Any] = {}
    if "both" in collected:
        targets = collected["both_targets"]
        per_head = evaluate_heads(collected["both"], targets, multi_label=multi_label)
        metrics.update({k: dict(v) for k, v in per_head.items()})
        if not multi_label:
            for head, x in collected["both"].items():
                metrics[head]["nll"] = _nll(x, targets)
            avg = average_logits(collected["both"])
            metrics["average"]["nll"] = _nll(avg, targets)
            metrics["average"]["confusion"] = confusion_matrix(avg.argmax(-1), targets, avg.shape[-1]).tolist()
    for cond in collected:
        if not cond.endswith("_only") or cond.endswith("_targets"):
            continue
        targets = collected[f"{cond}_targets"]
        per_head = evaluate_heads(collected[cond], targets, multi_label=multi_label)
        own = cond[: -len("_only")]
        main = dict(per_head.get(own, per_head["average"]))
        if not multi_label:
            logits = collected[cond]
            main["nll"] = _nll(logits[own] if own in logits else average_logits(logits), targets)
        metrics[cond] = {**main, "heads": per_head}
    return metrics


def evaluate_classifier(
    model: ZorroClassifier, loader: Iterable[dict[str, Any]], *, multi_label: bool = False, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Metrics of each classifier head, of their average, and of unimodal inference.

    Returns ``{"audio": {...}, "video": {...}, "fusion": {...}, "global": {...},
    "average": {...}, "audio_only": {...}, "video_only": {...}}`` (the outputs the model
    has) where each inner dict has ``top1``/``top5`` and ``nll`` (mean cross-entropy, nats)
    for single-label data, or ``mAP`` for multi-label data. ``audio``...``average`` use both
    inputs. ``audio_only`` is the model given audio alone: its metrics are the audio
    output's head (o_A, the modality-pure output), and ``heads`` lists every output
    computable from audio alone, with their average. ``video_only`` likewise.
    Single-label results also carry ``confusion`` (the averaged-logit confusion matrix as
    nested lists) under ``average``; :func:`confusion_report` gives one for every entry.
    """
    return classifier_metrics(collect_logits(model, loader, device=device), multi_label=multi_label)


def confusion_report(collected: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Confusion matrix and per-class accuracy of every evaluated entry (single-label data).

    Args:
        collected: :func:`collect_logits` output.

    Returns:
        entry name (``audio``, ..., ``average``, ``audio_only``, ``video_only``: those
        evaluated) -> ``{"confusion": (C, C) nested int lists (rows: true class, columns:
        predicted), "per_class_top1": C fractions (None for a class with no clip),
        "support": C clip counts, "top1": fraction}``.
    """
    report: dict[str, dict[str, Any]] = {}
    for name, (logits, targets) in _evaluated(collected).items():
        if targets.dim() != 1:
            raise ValueError("confusion_report needs single-label targets (N,)")
        cm = confusion_matrix(logits.argmax(-1), targets, logits.shape[-1])
        support = cm.sum(1)
        correct = cm.diagonal()
        per_class = [float(c) / float(n) if n else None for c, n in zip(correct.tolist(), support.tolist())]
        report[name] = {"confusion": cm.tolist(), "per_class_top1": per_class, "support": support.tolist(),
                        "top1": float(correct.sum()) / max(1, int(support.sum()))}
    return report


def write_confusion_report(report: Mapping[str, Mapping[str, Any]], labels: Sequence[str], folder: str | Path) -> list[Path]:
    """Write :func:`confusion_report` as ``folder/<entry>.json`` (the matrix, per-class
    accuracy and support, with the label names) and ``folder/<entry>.png`` (a plot; skipped
    with a warning when matplotlib is missing) for each entry (``audio``, ..., ``average``,
    ``audio_only``, ``video_only``). Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, entry in report.items():
        doc = {"output": name, "labels": list(labels), **{k: entry[k] for k in ("top1", "per_class_top1", "support", "confusion")}}
        written.append(atomic_write_text(folder / f"{name}.json", json.dumps(doc, indent=1)))
        try:
            from zorro.plots import plot_confusion

            plot_confusion(entry["confusion"], list(labels), folder / f"{name}.png", title=f"{name} (top-1 {entry['top1']:.3f})")
            written.append(folder / f"{name}.png")
        except ImportError as err:
            logger.warning("no confusion plots: %s", err)
            break
    return written


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of a metrics dict worth a console line: each entry's float metrics,
    rounded to 4 places (no confusion matrices or per-head details)."""
    return {k: ({m: round(v, 4) for m, v in val.items() if isinstance(v, float)} if isinstance(val, Mapping) else val)
            for k, val in metrics.items()}


@torch.no_grad()
def collect_embeddings(
    model: ZorroPretrainer, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu", unimodal: bool = False
) -> dict[str, torch.Tensor]:
    """Projected (L2-normalised) audio and video embeddings of the clips having both, with labels.

    Args:
        model: the pre-training task (backbone + projections).
        loader: batches of clips (``collate_clips``).
        device: where the model runs.
        unimodal: False (default): one call with both inputs per batch (o_A and o_V as in
            pre-training). True: the audio projections come from audio-only calls and the
            video projections from video-only calls -- what a user of one modality gets, and
            what differs from the first whenever o_A may see the video (``mask_rule`` other
            than ``"zorro"``).

    Returns:
        ``{"audio": (N, P), "video": (N, P), "label": (N,) or (N, C)}`` float32.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    acc: dict[str, list[torch.Tensor]] = {"audio": [], "video": [], "label": []}
    for batch in _batches(loader, device):
        sel = batch["has_audio"] & batch["has_video"]
        if not bool(sel.any()):
            continue
        if unimodal:
            proj = {"audio": model(audio=batch["audio"][sel])[1]["audio"], "video": model(video=batch["video"][sel])[1]["video"]}
        else:
            _, proj = model(audio=batch["audio"][sel], video=batch["video"][sel])
        acc["audio"].append(proj["audio"].float().cpu())
        acc["video"].append(proj["video"].float().cpu())
        acc["label"].append(batch["label"][sel].cpu())
    model.train(was_training)
    if not acc["audio"]:
        raise ValueError("no clip with both audio and video to evaluate retrieval on")
    return {k: torch.cat(v) for k, v in acc.items()}


def evaluate_retrieval(
    model: ZorroPretrainer, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu", unimodal: bool = False
) -> dict[str, float]:
    """Audio->video and video->audio retrieval R@1/5/10, class level (a query is correct when
    a retrieved clip has its label) and instance level (its own clip).

    ``unimodal=True`` embeds the audio from audio-only calls and the video from video-only
    calls (see :func:`collect_embeddings`).

    Returns ``{"a2v_r1", "a2v_r5", "a2v_r10", "v2a_r1", ..., "instance_a2v_r1", ...}``.
    """
    emb = collect_embeddings(model, loader, device=device, unimodal=unimodal)
    labels = emb["label"]
    if labels.dim() != 1:
        labels = None  # multi-label: class-level retrieval is not defined here; instance only
    n = emb["audio"].shape[0]
    ks = tuple(k for k in (1, 5, 10) if k <= n)
    out: dict[str, float] = {}
    if labels is not None:
        for key, value in bidirectional_retrieval_recall(emb["audio"], emb["video"], ks, labels=labels).items():
            out[_short(key)] = value
    for key, value in bidirectional_retrieval_recall(emb["audio"], emb["video"], ks).items():
        out["instance_" + _short(key)] = value
    return out


def _short(key: str) -> str:
    # "audio2video/R@1" -> "a2v_r1"
    pair, metric = key.split("/")
    src, dst = pair.split("2")
    return f"{src[0]}2{dst[0]}_{metric.lower().replace('@', '')}"


@torch.no_grad()
def _embed_all(backbone, loader, device, unimodal: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    acc: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    for batch in _batches(loader, device):
        sel = batch["has_audio"] & batch["has_video"]
        if not bool(sel.any()):
            continue
        if unimodal:
            embeddings = {"audio": backbone.encode(audio=batch["audio"][sel]).embeddings["audio"],
                          "video": backbone.encode(video=batch["video"][sel]).embeddings["video"]}
        else:
            embeddings = backbone.encode(audio=batch["audio"][sel], video=batch["video"][sel]).embeddings
        for name, e in embeddings.items():
            acc.setdefault(name, []).append(torch.nn.functional.normalize(e.float(), dim=-1).cpu())
        labels.append(batch["label"][sel].cpu())
    return {k: torch.cat(v) for k, v in acc.items()}, torch.cat(labels)


def centroid_probe(
    backbone,
    train_loader: Iterable[dict[str, Any]],
    test_loader: Iterable[dict[str, Any]],
    *,
    device: torch.device | str = "cpu",
    unimodal: bool = False,
) -> dict[str, float]:
    """Nearest-class-centroid accuracy of each output's embedding (a label-free model's probe).

    Class centroids of the L2-normalised embeddings of ``train_loader``'s clips; each test
    clip gets the class of the most cosine-similar centroid. Single-label data only.

    ``unimodal=False`` (default): every output of the backbone given both inputs.
    ``unimodal=True``: o_A from audio-only calls and o_V from video-only calls (centroids and
    test embeddings alike), keyed ``audio`` and ``video``.

    Returns:
        dict output name -> top-1 fraction in ``[0, 1]``.
    """
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    train_emb, train_y = _embed_all(backbone, train_loader, device, unimodal)
    test_emb, test_y = _embed_all(backbone, test_loader, device, unimodal)
    backbone.train(was_training)
    if train_y.dim() != 1:
        raise ValueError("centroid_probe needs single-label data")
    classes = int(max(train_y.max(), test_y.max())) + 1
    out = {}
    for name, emb in train_emb.items():
        centroids = torch.zeros(classes, emb.shape[1]).index_add_(0, train_y, emb)
        centroids = torch.nn.functional.normalize(centroids, dim=-1)
        pred = (test_emb[name] @ centroids.T).argmax(-1)
        out[name] = float((pred == test_y).float().mean())
    return out
