"""Evaluation by a dataset's published protocol: one score per file, then the dataset's metrics.

:func:`collect_file_scores` runs a classifier over an evaluation loader and gives one row of
logits per source file: a file prepared with several windows (``zorro prepare --window
even:N``; multi-window evaluation) gets the mean of its windows' logits, each window scored
by the average of every output its inputs allow (audio and video where both are present,
audio alone for audio-only data such as ESC-50). :func:`evaluate_protocol` applies
:func:`zorro.metrics.dataset_metrics` to them, with the metrics each dataset's registry
module declares (:mod:`zorro.data.registry`): AudioSet mAP/mAUC/d-prime, VGGSound
top-1/top-5/mAP, Kinetics-Sounds top-1/top-5, ESC-50 and UrbanSound8K top-1 of the fold.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from zorro.data import modality_inputs, split_by_modality
from zorro.heads import average_logits
from zorro.metrics import PROTOCOLS, dataset_metrics

__all__ = ["collect_file_scores", "evaluate_protocol", "PROTOCOLS"]


@torch.no_grad()
def collect_file_scores(
    model: torch.nn.Module, loader: Iterable[dict[str, Any]], *, device: torch.device | str = "cpu", average_windows: bool = True
) -> dict[str, Any]:
    """Logits per file (or per window) of a classifier over a loader of ``collate_clips`` batches.

    Args:
        model: a :class:`zorro.tasks.ZorroClassifier` (called with each modality by name,
            ``audio=``/``video=``/..., returns a dict output name -> ``(B, C)`` logits).
        loader: evaluation batches (``label``, ``path``, ``has_audio``, ``has_video``, ...).
        device: where the model runs.
        average_windows: average the rows that share a ``path`` (windows of one file).

    Returns:
        ``{"scores": (F, C) float32, "targets": (F,) or (F, C), "paths": [F str],
        "num_windows": int}`` with ``F`` the files (or windows without averaging), in first-seen order.

    Raises:
        ValueError: the loader gave no clip; windows of one file with different labels.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    paths: list[str] = []
    for batch in loader:
        if len(batch["label"]) == 0:
            continue
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = torch.empty(0)
        names = tuple(getattr(getattr(model, "backbone", model), "modality_names", ("audio", "video")))
        for group in split_by_modality(batch, [m for m in names if f"has_{m}" in batch]):
            logits = model(**modality_inputs(group, names))
            avg = average_logits(logits).float().cpu()  # (b, C)
            if out.numel() == 0:
                out = torch.empty(len(batch["label"]), avg.shape[1])
            out[group["batch_index"].cpu()] = avg
        rows.append(out)
        targets.append(batch["label"].cpu())
        paths.extend(batch["path"])
    model.train(was_training)
    if not rows:
        raise ValueError("collect_file_scores: the loader gave no clip to evaluate")
    scores, labels = torch.cat(rows), torch.cat(targets)
    num_windows = scores.shape[0]
    if average_windows:
        order: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            order.setdefault(p, []).append(i)
        if len(order) < len(paths):
            for p, idx in order.items():
                if len(idx) > 1 and not bool((labels[idx] == labels[idx[0]]).all()):
                    raise ValueError(f"collect_file_scores: windows of {p} carry different labels")
            scores = torch.stack([scores[idx].mean(dim=0) for idx in order.values()])
            labels = labels[[idx[0] for idx in order.values()]]
            paths = list(order)
    return {"scores": scores, "targets": labels, "paths": paths, "num_windows": num_windows}


def evaluate_protocol(
    model: torch.nn.Module, loader: Iterable[dict[str, Any]], protocol: str, *, device: torch.device | str = "cpu",
    average_windows: bool = True,
) -> dict[str, Any]:
    """A dataset's metrics for a classifier (see the module docstring).

    Args:
        model: a :class:`zorro.tasks.ZorroClassifier`.
        loader: evaluation batches.
        protocol: a dataset name of :data:`zorro.metrics.PROTOCOLS` (the dataset registry).
        device: where the model runs.
        average_windows: one score per file (mean over its windows).

    Returns:
        ``{"protocol", "num_files", "num_windows", **dataset_metrics(...)}``.

    Raises:
        ValueError: an unknown protocol, or as :func:`collect_file_scores` / the metric.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
    got = collect_file_scores(model, loader, device=device, average_windows=average_windows)
    metrics = dataset_metrics(protocol, got["scores"], got["targets"])
    return {"protocol": protocol, "num_files": int(got["scores"].shape[0]), "num_windows": got["num_windows"], **metrics}
