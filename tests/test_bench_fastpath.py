"""The fast-path benchmark's report: bf16 detection from /proc/cpuinfo and the printed table
(no timing here)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
fastpath = importlib.import_module("modelbench.fastpath")

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl
processor\t: 1
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512vl
"""


def test_bf16_capability_from_flags():
    assert fastpath.bf16_capability(["avx2", "avx512f", "amx_bf16", "amx_tile", "avx512_bf16"]) == "AMX"
    assert fastpath.bf16_capability(["avx2", "avx512f", "avx512_bf16"]) == "AVX512-BF16"
    assert fastpath.bf16_capability(["avx2", "avx512f"]) == "emulated"
    assert fastpath.bf16_capability([]) == "emulated"


def test_cpu_facts_read_the_model_and_flags():
    facts = fastpath.cpu_facts(CPUINFO)
    assert facts == {"cpu": "AMD EPYC 9R14", "flags": ["avx2", "avx512_bf16", "avx512f"], "bf16": "AVX512-BF16"}
    assert fastpath.cpu_facts("") == {"cpu": "unknown", "flags": [], "bf16": "emulated"}


def test_bf16_rows_only_where_native_unless_asked():
    assert fastpath.precisions_to_run("AMX") == (["fp32", "bf16"], None)
    assert fastpath.precisions_to_run("AVX512-BF16") == (["fp32", "bf16"], None)
    precisions, why = fastpath.precisions_to_run("emulated")
    assert precisions == ["fp32"] and "bf16 rows skipped" in why and "emulated" in why
    assert fastpath.precisions_to_run("emulated", ["fp32", "bf16"]) == (["fp32", "bf16"], None)


def test_report_names_the_cpu_first_and_gives_ratios_and_notes():
    facts = dict(fastpath.cpu_facts(CPUINFO), cores=2)
    rows = [
        {"precision": "fp32", "mode": "forward", "backend": "sdpa", "compiled": True, "seed_s": 3.0, "ours_s": 1.2,
         "mfu": 0.543, "peak_mib": 101.4},
        {"precision": "fp32", "mode": "train", "backend": "flex", "compiled": False, "note": "ValueError: no CPU backward"},
    ]
    text = fastpath.format_report(facts, rows, peaks={"fp32": 0.1}, workload="n = 608", skipped="bf16 rows skipped: x")
    lines = text.splitlines()
    assert lines[0].startswith("CPU: AMD EPYC 9R14 (2 cores); bf16: AVX512-BF16")
    assert "fp32 0.100 TFLOP/s" in lines[1] and lines[2] == "workload: n = 608" and lines[3] == "NOTE: bf16 rows skipped: x"
    forward = next(line for line in lines if "forward" in line)
    assert "2.50x" in forward and "54%" in forward and "101" in forward and " yes " in forward
    train = next(line for line in lines if "train" in line)
    assert train.endswith("ValueError: no CPU backward") and " - " in train
