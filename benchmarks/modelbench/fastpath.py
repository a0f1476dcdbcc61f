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


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


HEADER = ("precision", "mode", "backend", "compiled", "seed ms", "ours ms", "seed/ours", "MFU", "peak MiB", "note")


def format_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One table row from a measurement dict (keys: ``precision, mode, backend, compiled``,
    and when it ran ``seed_s, ours_s, mfu, peak_mib``; else ``note``)."""
    seed, ours = row.get("seed_s"), row.get("ours_s")
    ratio = seed / ours if seed and ours else None
    return (row["precision"], row["mode"], row["backend"], "yes" if row["compiled"] else "no",
            _num(seed * 1e3 if seed else None, ".0f"), _num(ours * 1e3 if ours else None, ".0f"),
            _num(ratio, ".2f") + ("x" if ratio else ""), _num(row["mfu"] * 100 if row.get("mfu") else None, ".0f") + ("%" if row.get("mfu") else ""),
            _num(row.get("peak_mib"), ".0f"), row.get("note", ""))


def format_report(facts: dict[str, Any], rows: list[dict[str, Any]], *, peaks: dict[str, float], workload: str,
                  skipped: str | None = None) -> str:
    """The printed report: the machine and its bf16 capability first, then one row per
    measurement (ratios are seed time / our time, from the same process, interleaved)."""
    lines = [f"CPU: {facts['cpu']} ({facts.get('cores', '?')} cores); bf16: {facts['bf16']}"
             + (f" (flags: {' '.join(facts['flags'])})" if facts.get("flags") else ""),
             "matmul peak: " + ", ".join(f"{p} {v:.3f} TFLOP/s" for p, v in peaks.items()),
             f"workload: {workload}"]
    if skipped:
        lines.append(f"NOTE: {skipped}")
    table = [HEADER] + [format_row(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER) - 1)]
    for r in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(lines)
