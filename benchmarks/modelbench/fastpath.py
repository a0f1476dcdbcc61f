"""The per-machine fast-path table (``bench_fastpath.py``): what this CPU can do in bf16, and
the rows of eager / compiled x backend x forward / training step against the seed.

Pure functions only (no timing here), so the detection and the report are unit-tested.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

#: bf16 capability names, best first.
BF16_AMX, BF16_AVX512, BF16_EMULATED = "AMX", "AVX512-BF16", "emulated"


def bf16_capability(flags: Iterable[str]) -> str:
    """What a CPU with ``flags`` (the words of ``/proc/cpuinfo``'s ``flags`` line) does with bf16
    matmuls: ``"AMX"`` (``amx_bf16``: tile units), ``"AVX512-BF16"`` (``avx512_bf16``: dot-product
    instructions) or ``"emulated"`` (converted to fp32 and back: slower than fp32)."""
    flags = set(flags)
    if "amx_bf16" in flags:
        return BF16_AMX
    if "avx512_bf16" in flags:
        return BF16_AVX512
    return BF16_EMULATED


def cpu_facts(cpuinfo: str) -> dict[str, Any]:
    """``{"cpu": model name, "flags": [...], "bf16": capability}`` from the text of ``/proc/cpuinfo``
    (``"unknown"`` / ``[]`` / ``"emulated"`` when it says nothing)."""
    model, flags = "unknown", []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = value.split()
    shown = sorted(f for f in flags if f.startswith(("amx", "avx512_bf16", "avx512f", "avx2")))
    return {"cpu": model, "flags": shown, "bf16": bf16_capability(flags)}


def precisions_to_run(capability: str, requested: Iterable[str] | None = None) -> tuple[list[str], str | None]:
    """The precisions to time and, when bf16 is left out, the sentence that says why.

    bf16 is timed only where it is native (AMX or AVX512-BF16), unless ``requested`` names it."""
    if requested:
        return list(requested), None
    if capability == BF16_EMULATED:
        return ["fp32"], "bf16 rows skipped: this CPU has no AVX512-BF16 or AMX, so bf16 autocast is emulated (slower than fp32)"
    return ["fp32", "bf16"], None


def best_rates(*runs: dict[str, Any]) -> dict[str, Any]:
    """The higher of each rate over several peak measurements (``{"fp32": TFLOP/s, ...,
    "attention": {"fp32": {"forward": ..., "train": ..., "blocks": [...]}}}``); a run that failed
    (no rates) is ignored."""
    best: dict[str, Any] = {"attention": {}}
    for run in runs:
        for key, value in run.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                best[key] = max(best.get(key, 0.0), float(value))
        for prec, rates in (run.get("attention") or {}).items():
            mine = best["attention"].setdefault(prec, dict(rates))
            for key in ("forward", "train"):
                mine[key] = max(mine[key], rates[key])
    return best


def floor_s(flops: dict[str, float], mode: str, mm_tflops: float, attention: dict[str, float]) -> float:
    """The least time a step can take on this machine with this attention kernel: the
    attention FLOPs at the SDPA kernel's measured rate, every other FLOP at the ``torch.mm``
    peak (training counts 3x the forward's FLOPs)."""
    k = 3 if mode == "train" else 1
    attn = flops["attention"] * k / (attention[mode] * 1e12)
    return attn + (flops["total"] - flops["attention"]) * k / (mm_tflops * 1e12)


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


HEADER = ("precision", "mode", "backend", "compiled", "seed ms", "ours ms", "seed/ours", "MFU", "floor ms", "peak MiB",
          "note")


def format_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One table row from a measurement dict (keys: ``precision, mode, backend, compiled``,
    and when it ran ``seed_s, ours_s, mfu, peak_mib`` and for ``sdpa`` ``floor_s``; else
    ``note``)."""
    seed, ours, floor = row.get("seed_s"), row.get("ours_s"), row.get("floor_s")
    ratio = seed / ours if seed and ours else None
    return (row["precision"], row["mode"], row["backend"], "yes" if row["compiled"] else "no",
            _num(seed * 1e3 if seed else None, ".0f"), _num(ours * 1e3 if ours else None, ".0f"),
            _num(ratio, ".2f") + ("x" if ratio else ""), _num(row["mfu"] * 100 if row.get("mfu") else None, ".0f") + ("%" if row.get("mfu") else ""),
            _num(floor * 1e3 if floor else None, ".0f"), _num(row.get("peak_mib"), ".0f"), row.get("note", ""))


def format_attention(attention: dict[str, dict[str, float]], peaks: dict[str, float], share: float | None = None) -> str:
    """One line: the SDPA kernel's TFLOP/s per precision (forward; forward + backward) on one
    layer's calls (``blocks``: their query counts) and its fraction of that precision's matmul
    peak; ``share``: attention's part of the forward FLOPs."""
    parts = []
    for prec, rate in attention.items():
        peak = peaks.get(prec)
        frac = (lambda x: f" ({x / peak:.0%} of mm)") if peak else (lambda x: "")
        parts.append(f"{prec} forward {rate['forward']:.3f}{frac(rate['forward'])}, training {rate['train']:.3f}{frac(rate['train'])}")
    blocks = next(iter(attention.values()))["blocks"]
    head = f"attention kernel (sdpa: one layer's {len(blocks)} calls, {' / '.join(map(str, blocks))} query tokens), TFLOP/s: "
    tail = f"; attention is {share:.0%} of the forward FLOPs" if share is not None else ""
    return head + "; ".join(parts) + tail


def format_report(facts: dict[str, Any], rows: list[dict[str, Any]], *, peaks: dict[str, float], workload: str,
                  skipped: str | None = None, attention: dict[str, dict[str, float]] | None = None,
                  attention_share: float | None = None) -> str:
    """The printed report: the machine and its bf16 capability first, the matmul peak and
    the attention kernel's rate, then one row per measurement (ratios are seed time / our
    time, from the same process, interleaved; ``floor ms``: :func:`floor_s`)."""
    lines = [f"CPU: {facts['cpu']} ({facts.get('cores', '?')} cores); bf16: {facts['bf16']}"
             + (f" (flags: {' '.join(facts['flags'])})" if facts.get("flags") else ""),
             "matmul peak: " + ", ".join(f"{p} {v:.3f} TFLOP/s" for p, v in peaks.items())]
    if attention:
        lines.append(format_attention(attention, peaks, attention_share))
    lines.append(f"workload: {workload}")
    if skipped:
        lines.append(f"NOTE: {skipped}")
    table = [HEADER] + [format_row(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(lines)
