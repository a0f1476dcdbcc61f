"""PNG plots of a run: loss curves and a confusion matrix (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, *, title: str = "loss") -> None:
    """Plot the ``loss`` (and each entry of ``parts``) of training log records against ``step``.

    Args:
        history: log records with ``step``, ``loss`` and optionally ``parts`` (dict of floats).
        path: PNG file to write.
    """
    records = [r for r in history if "loss" in r]
    if not records:
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], label="total", linewidth=2)
    part_names = sorted({k for r in records for k in r.get("parts", {}) if k not in ("total", "temperature")})
    for name in part_names:
        ax.plot(steps, [r.get("parts", {}).get(name, float("nan")) for r in records], label=name, alpha=0.7)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], path: str | Path, *, title: str = "confusion") -> None:
    """Plot a ``(C, C)`` confusion matrix (rows: true class, columns: predicted) to ``path``."""
    plt = _pyplot()
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(names), 1 + 0.5 * len(names)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7, color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
