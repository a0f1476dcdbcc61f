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
    """Plot a ``(C, C)`` confusion matrix (rows: true class, columns: predicted) to ``path``.

    Up to 40 classes every cell has its count and every class its name; beyond, the figure
    stays at most 24 inches wide, counts are left out and names above 80 classes too."""
    plt = _pyplot()
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    c = len(names)
    side = min(24.0, 1 + 0.5 * c)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(m, cmap="Blues")
    if c <= 80:
        ax.set_xticks(range(c), names, rotation=45 if c <= 40 else 90, ha="right" if c <= 40 else "center", fontsize=None if c <= 40 else 5)
        ax.set_yticks(range(c), names, fontsize=None if c <= 40 else 5)
    for i in range(m.shape[0] if c <= 40 else 0):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", fontsize=7, color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_comparison(
    panels: Sequence[tuple[str, str, dict[str, Sequence[tuple[Sequence[float], Sequence[float]]]]]],
    bars: tuple[str, dict[str, dict[str, float]]] | None,
    path: str | Path,
    *,
    title: str = "",
) -> None:
    """Several runs side by side: curves per label in each panel, then one grouped bar chart.

    Args:
        panels: ``(title, y label, {label: [(x, y), ...]})`` per curve panel; a label's runs
            (e.g. training seeds) share one colour, the first run is solid, the others dashed.
            The x axis is the optimiser step.
        bars: ``(title, {metric: {label: value}})``: one group of bars per metric, one bar
            per label, values in ``[0, 1]``; or None for no bar panel.
        path: PNG file to write.
        title: figure title.
    """
    plt = _pyplot()
    n = len(panels) + (bars is not None)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False)
    labels = list(dict.fromkeys([lab for _, _, curves in panels for lab in curves] + ([lab for m in bars[1].values() for lab in m] if bars else [])))
    colour = {lab: f"C{i}" for i, lab in enumerate(labels)}
    for ax, (panel_title, ylabel, curves) in zip(axes[0], panels):
        for lab, runs in curves.items():
            for j, (x, y) in enumerate(runs):
                ax.plot(x, y, color=colour[lab], linestyle="-" if j == 0 else "--", alpha=0.85, label=lab if j == 0 else None)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if bars is not None:
        ax = axes[0][-1]
        bar_title, metrics = bars
        names = list(metrics)
        width = 0.8 / max(1, len(labels))
        for i, lab in enumerate(labels):
            xs = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(names))]
            ax.bar(xs, [metrics[m].get(lab, float("nan")) for m in names], width=width, color=colour[lab], label=lab)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.3)  # room above the bars for the legend
        ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        ax.set_title(bar_title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, ncol=3, loc="upper center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
