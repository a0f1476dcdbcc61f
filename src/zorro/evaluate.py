"""Evaluation of trained models: classification per output, unimodal inference, retrieval.

All functions run under ``torch.no_grad`` in eval mode and return plain dicts of floats
(fractions in ``[0, 1]``), ready for JSON.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from zorro.heads import average_logits
from zorro.metrics import bidirectional_retrieval_recall, confusion_matrix, evaluate_heads
from zorro.tasks import ZorroClassifier, ZorroPretrainer


def _batches(loader: Iterable[dict[str, Any]], device: torch.device):
    for batch in loader:
        if len(batch["label"]) == 0:
            continue
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def collect_logits(model: ZorroClassifier, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Logits of every output under three input conditions.

    Returns a dict with ``targets`` (``(N,)`` or ``(N, C)``) and, for each condition
    ``both`` (audio and video given), ``audio_only`` and ``video_only``, a dict output name
    -> ``(N, C)`` float logits. Clips lacking a modality contribute only to the conditions
    they can feed (and to ``both`` through the outputs their inputs allow), so the
    unimodal conditions hold the clips that have that modality.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, list[torch.Tensor]]] = {"both": {}, "audio_only": {}, "video_only": {}}
    targets: dict[str, list[torch.Tensor]] = {"both": [], "audio_only": [], "video_only": []}
    for batch in _batches(loader, device):
        ha, hv = batch["has_audio"], batch["has_video"]
        both = ha & hv
        conditions = [
            ("both", both, True, True),
            ("audio_only", ha, True, False),
            ("video_only", hv, False, True),
        ]
        for name, sel, use_a, use_v in conditions:
            if not bool(sel.any()):
                continue
            logits = model(audio=batch["audio"][sel] if use_a else None, video=batch["video"][sel] if use_v else None)
            for head, x in logits.items():
                out[name].setdefault(head, []).append(x.float().cpu())
            targets[name].append(batch["label"][sel].cpu())
    model.train(was_training)
    result: dict[str, Any] = {}
    for name in out:
        if targets[name]:
            result[name] = {head: torch.cat(xs) for head, xs in out[name].items()}
            result[f"{name}_targets"] = torch.cat(targets[name])
    return result


def evaluate_classifier(
    model: ZorroClassifier, loader: Iterable[dict[str, Any]], *, multi_label: bool = False, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Metrics of each classifier head, of their average, and of unimodal inference.

    Returns ``{"audio": {...}, "video": {...}, "fusion": {...}, "global": {...},
    "average": {...}, "audio_only": {...}, "video_only": {...}}`` where each inner dict has
    ``top1``/``top5`` (single label) or ``mAP`` (multi label). ``audio``...``average`` use
    both inputs. ``audio_only`` is the model given audio alone: its ``top1``/``mAP`` is the
    audio output's head (o_A, the modality-pure output), and ``heads`` lists every output
    computable from audio alone, with their average. ``video_only`` likewise.
    Single-label results also carry ``confusion`` (the averaged-logit confusion matrix as
    nested lists) under ``average``.
    """
    collected = collect_logits(model, loader, device=device)
    metrics: dict[str, Any] = {}

    if "both" in collected:
        per_head = evaluate_heads(collected["both"], collected["both_targets"], multi_label=multi_label)
        metrics.update({k: dict(v) for k, v in per_head.items()})
        if not multi_label:
            avg = average_logits(collected["both"])
            cm = confusion_matrix(avg.argmax(-1), collected["both_targets"], avg.shape[-1])
            metrics["average"]["confusion"] = cm.tolist()
    for cond, own in (("audio_only", "audio"), ("video_only", "video")):
        if cond not in collected:
            continue
        per_head = evaluate_heads(collected[cond], collected[f"{cond}_targets"], multi_label=multi_label)
        main = per_head.get(own, per_head["average"])
        metrics[cond] = {**main, "heads": per_head}
    return metrics


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
