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


def _batches(loader: Iterable[dict[str, Any]], device: torch.device):
    for batch in loader:
        if len(batch["label"]) == 0:
            continue
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _modalities(model) -> tuple[str, ...]:
    """The modalities of a task's (or a bare backbone's) model."""
    backbone = getattr(model, "backbone", model)
    return tuple(backbone.modality_names)


def _has(batch: dict[str, Any], name: str) -> torch.Tensor:
    flag = batch.get(f"has_{name}")
    return flag if flag is not None else torch.zeros(len(batch["label"]), dtype=torch.bool, device=batch["label"].device)


def _inputs(batch: dict[str, Any], sel: torch.Tensor, names) -> dict[str, torch.Tensor]:
    """The model's inputs for the rows ``sel`` from the modalities ``names``."""
    out = {}
    for name in names:
        value = batch.get(name)
        if value is None:
            continue
        out[name] = value[sel]
        mask = batch.get(f"{name}_mask")
        if mask is not None and not bool(mask[sel].all()):
            out[f"{name}_mask"] = mask[sel]
    return out


def _short_names(names) -> dict[str, str]:
    """How retrieval metrics name each modality: its initial when the initials are unique
    (``a2v_r1``, as for the audio-video model), else its whole name (``audio2accel_r1``)."""
    initials = [n[0] for n in names]
    unique = len(set(initials)) == len(initials)
    return {n: (n[0] if unique else n) for n in names}


@torch.no_grad()
def collect_logits(model: ZorroClassifier, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Logits of every output with all inputs, and with each modality alone.

    Returns a dict with, for each condition -- ``both`` (every modality of the model
    given: audio and video for the audio-video model) and ``<name>_only`` for each modality
    (``audio_only``, ``video_only``, ``text_only``, ...) -- a dict output name -> ``(N, C)``
    float logits and ``<condition>_targets`` (``(N,)`` or ``(N, C)``). ``both`` holds the
    clips having every modality; ``<name>_only`` the clips having that one.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    names = _modalities(model)
    conditions = ["both"] + [f"{m}_only" for m in names]
    out: dict[str, dict[str, list[torch.Tensor]]] = {c: {} for c in conditions}
    targets: dict[str, list[torch.Tensor]] = {c: [] for c in conditions}
    for batch in _batches(loader, device):
        flags = {m: _has(batch, m) for m in names}
        every = torch.stack(list(flags.values())).all(dim=0)
        for cond, sel, use in [("both", every, names)] + [(f"{m}_only", flags[m], (m,)) for m in names]:
            if not bool(sel.any()):
                continue
            logits = model(**_inputs(batch, sel, use))
            for head, x in logits.items():
                out[cond].setdefault(head, []).append(x.float().cpu())
            targets[cond].append(batch["label"][sel].cpu())
    model.train(was_training)
    result: dict[str, Any] = {}
    for name in out:
        if targets[name]:
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
    has, and one ``<name>_only`` per modality: ``text_only`` too for a model with text) where
    each inner dict has ``top1``/``top5`` and ``nll`` (mean cross-entropy, nats) for
    single-label data, or ``mAP`` for multi-label data. The outputs and ``average`` use every
    input. ``<name>_only`` is the model given that modality alone: its metrics are that
    modality's own head (the modality-pure output), and ``heads`` lists every output
    computable from it alone, with their average.
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
    """Projected (L2-normalised) embeddings of every contrasted modality, for the clips having them all, with labels.

    Args:
        model: the pre-training task (backbone + projections).
        loader: batches of clips (``collate_clips``).
        device: where the model runs.
        unimodal: False (default): one call with every input per batch (the modality
            outputs as in pre-training). True: each modality's projections come from calls
            with that modality alone -- what a user of one modality gets, and what differs
            from the first whenever one modality's output may see another (``mask_rule``
            other than ``"zorro"``).

    Returns:
        ``{"audio": (N, P), "video": (N, P), ..., "label": (N,) or (N, C)}`` float32: one
        entry per modality of ``model.modalities``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    names = model.modalities
    acc: dict[str, list[torch.Tensor]] = {m: [] for m in (*names, "label")}
    for batch in _batches(loader, device):
        sel = torch.stack([_has(batch, m) for m in names]).all(dim=0)
        if not bool(sel.any()):
            continue
        if unimodal:
            proj = {m: model(**_inputs(batch, sel, (m,)))[1][m] for m in names}
        else:
            _, proj = model(**_inputs(batch, sel, names))
        for m in names:
            acc[m].append(proj[m].float().cpu())
        acc["label"].append(batch["label"][sel].cpu())
    model.train(was_training)
    if not acc["label"]:
        raise ValueError(f"no clip with every one of {list(names)} to evaluate retrieval on")
    return {k: torch.cat(v) for k, v in acc.items()}


def evaluate_retrieval(
    model: ZorroPretrainer, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu", unimodal: bool = False
) -> dict[str, float]:
    """Cross-modal retrieval R@1/5/10 for every ordered pair of the contrasted modalities,
    class level (a query is correct when a retrieved clip has its label) and instance level
    (its own clip).

    ``unimodal=True`` embeds each modality from calls with it alone (see
    :func:`collect_embeddings`).

    Returns ``{"a2v_r1", "a2v_r5", "a2v_r10", "v2a_r1", ..., "instance_a2v_r1", ...}`` for the
    audio-video model; with more modalities every ordered pair (``a2t_r1``, ``t2v_r1``, ...),
    named by initials when those are unique, else by whole names (``audio2accel_r1``).
    """
    emb = collect_embeddings(model, loader, device=device, unimodal=unimodal)
    labels = emb["label"]
    if labels.dim() != 1:
        labels = None  # multi-label: class-level retrieval is not defined here; instance only
    names = model.modalities
    short = _short_names(names)
    n = emb[names[0]].shape[0]
    ks = tuple(k for k in (1, 5, 10) if k <= n)
    out: dict[str, float] = {}
    for i, a in enumerate(names):
        for c in names[i + 1:]:
            for prefix, lab in (("", labels), ("instance_", None)):
                if prefix == "" and labels is None:
                    continue
                for key, value in bidirectional_retrieval_recall(emb[a], emb[c], ks, labels=lab, names=("query", "gallery")).items():
                    out[prefix + _short(key, a, c, short)] = value
    return out


def _short(key: str, a: str, c: str, short: dict[str, str]) -> str:
    # "query2gallery/R@1" of the pair (a, c) -> "a2v_r1"
    pair, metric = key.split("/")
    src, dst = (a, c) if pair == "query2gallery" else (c, a)
    return f"{short[src]}2{short[dst]}_{metric.lower().replace('@', '')}"


@torch.no_grad()
def _embed_all(backbone, loader, device, unimodal: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    acc: dict[str, list[torch.Tensor]] = {}
    labels: list[torch.Tensor] = []
    names = _modalities(backbone)
    for batch in _batches(loader, device):
        sel = torch.stack([_has(batch, m) for m in names]).all(dim=0)
        if not bool(sel.any()):
            continue
        if unimodal:
            embeddings = {m: backbone.encode(**_inputs(batch, sel, (m,))).embeddings[m] for m in names
                          if m in backbone.return_token_names}
        else:
            embeddings = backbone.encode(**_inputs(batch, sel, names)).embeddings
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

    ``unimodal=False`` (default): every output of the backbone given every input.
    ``unimodal=True``: each modality's output from calls with that modality alone (o_A from
    audio-only calls, o_V from video-only calls; centroids and test embeddings alike), keyed
    by modality.

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
