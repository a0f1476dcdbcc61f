"""The parent side's outputs of the model benchmark: facts about the machine, the printed
table, the issue's goals checked against the measurements, and the scaling plot."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

from .workload import GIB, MAIN_N, layout_for


def machine_info() -> dict[str, Any]:
    """CPU model, flags of interest, cores, memory, load, library versions."""
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")))
    except OSError:
        pass
    info["cpus"] = os.cpu_count()
    info["mem_total_gib"] = _meminfo("MemTotal") / GIB
    info["mem_available_gib"] = _meminfo("MemAvailable") / GIB
    try:
        info["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return info


def _meminfo(field: str) -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024.0
    except OSError:
        pass
    return float("nan")


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_table(rows: list[dict[str, Any]], peak: dict[str, float]) -> None:
    """Human-readable side-by-side table of every measurement."""
    print()
    shown = ", ".join(f"{p} {peak[p]:.3f} TFLOP/s" for p in ("bf16", "fp32") if peak.get(p))
    print(f"matmul peak measured in this run: {shown}")
    head = (
        f"{'n':>5} {'mode':>7} {'prec':>4} | {'dense s':>8} {'ours s':>8} {'speedup':>7} {'cpu-t x':>7} | "
        f"{'dense MiB':>9} {'ours MiB':>8} {'mem x':>6} | {'ours TF/s':>9} {'MFU':>6} | {'dense TF/s':>10} {'maxdiff':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        d, o = r["models"].get("dense", {}), r["models"].get("ours", {})
        line = (
            f"{r['n']:>5} {r['mode']:>7} {r['precision']:>4} | {_fmt(d.get('median_s')):>8} {_fmt(o.get('median_s')):>8} "
            f"{_fmt(r.get('speedup'), '.2f'):>7} {_fmt(r.get('speedup_cpu_time'), '.2f'):>7} | {_fmt(d.get('peak_mib'), '.0f'):>9} {_fmt(o.get('peak_mib'), '.0f'):>8} "
            f"{_fmt(r.get('memory_ratio'), '.2f'):>6} | {_fmt(o.get('tflops'), '.3f'):>9} {_fmt(o.get('mfu'), '.1%'):>6} | "
            f"{_fmt(d.get('tflops'), '.3f'):>10} {_fmt(r.get('max_abs_diff'), '.1e'):>8}"
        )
        notes = [f"dense: {d['note']}" for d in (d,) if d.get("note")]
        if "ours+compile" in r["models"]:
            c = r["models"]["ours+compile"]
            notes.append(f"ours+compile {_fmt(c.get('median_s'))} s ({_fmt(c.get('speedup_vs_dense'), '.2f')}x, MFU {_fmt(c.get('mfu'), '.1%')})")
        if "ours+ckpt" in r["models"]:
            c = r["models"]["ours+ckpt"]
            notes.append(f"ours+ckpt {_fmt(c.get('median_s'))} s ({_fmt(c.get('speedup_vs_dense'), '.2f')}x), "
                         f"{_fmt(c.get('peak_mib'), '.0f')} MiB ({_fmt(c.get('memory_ratio_vs_dense'), '.3f')} of dense)")
        print(line + ("   " + "; ".join(notes) if notes else ""))


def evaluate_goals(rows: list[dict[str, Any]], big_n: int | None) -> list[dict[str, Any]]:
    """The issue's targets at the main configuration, each with the measured value."""
    def row(mode, prec, n=MAIN_N):
        return next((r for r in rows if r["nominal_n"] == n and r["mode"] == mode and r["precision"] == prec), None)

    goals = []

    def add(name, value, target, ok):
        goals.append({"goal": name, "value": value, "target": target, "met": ok})

    for mode, prec, target in (("forward", "fp32", 3.0), ("forward", "bf16", 6.0), ("train", "fp32", 3.0), ("train", "bf16", 3.0)):
        r = row(mode, prec)
        if r and r.get("speedup"):
            add(f"{mode} speedup {prec} at n={r['n']}", r["speedup"], f">= {target}x", r["speedup"] >= target)
    r = row("forward", "bf16")
    if r and r["models"].get("ours", {}).get("mfu"):
        mfu = r["models"]["ours"]["mfu"]
        add("bf16 forward MFU", mfu, ">= 50%", mfu >= 0.5)
    for prec in ("fp32", "bf16"):
        r = row("train", prec)
        if r and r.get("memory_ratio"):
            add(f"train peak memory ours/dense {prec}", r["memory_ratio"], "<= 1/3", r["memory_ratio"] <= 1 / 3)
    if big_n:
        for prec in ("fp32", "bf16"):
            r = row("train", prec, big_n)
            if r:
                o, d = r["models"].get("ours", {}), r["models"].get("dense", {})
                ok = o.get("mem_status") == "ok" and (o.get("peak_mib") or 1e18) < 24 * 1024
                add(
                    f"train step at n={r['n']} {prec} within 24 GiB (dense: {d.get('mem_status')})",
                    o.get("peak_mib"), "ours runs, < 24 GiB", ok,
                )
    return goals


def make_plot(rows: list[dict[str, Any]], path: Path) -> str | None:
    """Log-log time against n, with n^2 and allowed-block guides; returns the path or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, mode in zip(axes, ("forward", "train")):
        for prec, style in (("fp32", "-"), ("bf16", "--")):
            for model, color in (("dense", "tab:red"), ("ours", "tab:blue")):
                pts = [(r["n"], r["models"].get(model, {}).get("median_s")) for r in rows if r["mode"] == mode and r["precision"] == prec]
                pts = [(n, t) for n, t in pts if t]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", color=color, label=f"{model} {prec}")
        ours_pts = sorted(
            (r["n"], r["flops"], r["models"].get("ours", {}).get("median_s"))
            for r in rows if r["mode"] == mode and r["precision"] == "fp32"
        )
        anchor = next(((n, f, t) for n, f, t in ours_pts if n == layout_for(MAIN_N)["n"] and t), None)
        if anchor:
            n0, f0, t0 = anchor
            ns = [p[0] for p in ours_pts]
            ax.plot(ns, [t0 * p[1] / f0 for p in ours_pts], ":", color="tab:blue", alpha=0.6, label="∝ useful FLOPs (allowed blocks)")
            ax.plot(ns, [t0 * (n / n0) ** 2 for n in ns], ":", color="gray", alpha=0.6, label="∝ n² (from ours fp32)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("tokens n")
        ax.set_ylabel("seconds per step (median)")
        ax.set_title(f"{mode}: dim 512, depth 4, batch 2")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
