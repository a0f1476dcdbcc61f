"""The fast-path benchmark: bf16 detection from /proc/cpuinfo, the printed table, the floor,
and one small run of each kind of child (their results' shape, not their speed)."""

from __future__ import annotations

import importlib
import os
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


def test_floor_puts_attention_at_its_kernel_rate_and_the_rest_at_the_matmul_peak():
    flops = {"attention": 2e12, "total": 6e12}
    # forward: 2 TFLOP at 0.5 TFLOP/s + 4 TFLOP at 2 TFLOP/s
    assert fastpath.floor_s(flops, "forward", 2.0, {"forward": 0.5, "train": 0.25}) == 4.0 + 2.0
    # training counts 3x the forward's FLOPs, attention at its forward + backward rate
    assert fastpath.floor_s(flops, "train", 2.0, {"forward": 0.5, "train": 0.25}) == 24.0 + 6.0


def test_report_gives_the_attention_kernel_rate_against_the_matmul_peak():
    facts = dict(fastpath.cpu_facts(CPUINFO), cores=2)
    rows = [{"precision": "bf16", "mode": "forward", "backend": "sdpa", "compiled": False, "seed_s": 1.6, "ours_s": 0.8,
             "mfu": 0.53, "floor_s": 0.7, "peak_mib": 69.0}]
    attention = {"bf16": {"blocks": [664, 16, 1568], "forward": 0.1, "train": 0.08}}
    text = fastpath.format_report(facts, rows, peaks={"bf16": 0.4}, workload="n = 2248", attention=attention,
                                  attention_share=0.27)
    lines = text.splitlines()
    assert lines[2] == ("attention kernel (sdpa: one layer's 3 calls, 664 / 16 / 1568 query tokens), TFLOP/s: bf16 forward 0.100 (25% of mm), "
                        "training 0.080 (20% of mm); attention is 27% of the forward FLOPs")
    assert lines[3] == "workload: n = 2248"
    row = lines[-1]
    assert "2.00x" in row and "53%" in row and " 700 " in row and row.rstrip().endswith("69")


def test_best_rates_keeps_the_higher_of_each_peak_and_ignores_a_failed_run():
    start = {"fp32": 0.1, "bf16": 0.4, "attention": {"bf16": {"blocks": [664, 16, 1568], "forward": 0.10, "train": 0.09}}}
    end = {"fp32": 0.2, "bf16": 0.2, "attention": {"bf16": {"blocks": [664, 16, 1568], "forward": 0.14, "train": 0.05}}}
    best = fastpath.best_rates(start, end, {"status": "timeout", "note": "no result"})
    assert best == {"fp32": 0.2, "bf16": 0.4, "attention": {"bf16": {"blocks": [664, 16, 1568], "forward": 0.14, "train": 0.09}}}
    assert start["attention"]["bf16"]["forward"] == 0.10  # inputs untouched


def _bench_module():
    return importlib.import_module("bench_fastpath")


def test_peak_child_measures_the_matmul_and_one_layers_attention_calls():
    res = _bench_module().peak_child({"precisions": ["fp32"], "blocks": [8, 2, 16], "rows": 64, "size": 64})
    assert res["fp32"] > 0
    rates = res["attention"]["fp32"]
    assert rates["blocks"] == [8, 2, 16] and rates["forward"] > 0 and rates["train"] > 0


def test_child_times_seed_and_ours_and_measures_memory_before_the_timing():
    out = _bench_module().child({"n": 600, "precision": "fp32", "mode": "train", "backend": "sdpa", "compiled": False,
                                 "warmup": 1, "repeats": 2})
    assert out["max_abs_diff"] < 1e-4  # the seed and ours compute one function
    assert len(out["times"]["seed"]) == len(out["times"]["ours"]) == 2
    if os.access("/proc/self/clear_refs", os.W_OK):  # the RSS high-water mark can be reset
        assert out["peak_mib"] > 0 and out["seed_peak_mib"] > 0
