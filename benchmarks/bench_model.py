"""Zorro model benchmark: our block-sparse model against the dense seed-style reference.

What it measures, in one run (issue 7):

* **Models.** ``dense`` = :class:`zorro.reference.DenseZorro`, the seed's function computed the
  seed's way (full ``(n, n)`` score matrix + boolean mask). ``ours`` = :class:`zorro.Zorro`
  built with :meth:`~zorro.Zorro.from_zorro_pytorch` from the *same* weights (seed-compatible
  mode: same front-end, same arithmetic), default ``attn_backend="sdpa"``. Optionally
  ``ours+compile`` = ``torch.compile(ours, fullgraph=True)`` at the main configuration.
* **Workloads.** ``dim=512, depth=4, heads=8, dim_head=64``, 16 fusion tokens, batch 2; audio
  = seed power spectrogram of ``s`` seconds at 16 kHz (16x16 patches), video = ``f`` frames of
  224x224 (2x16x16 tubelets). Sizes (``n = n_a + n_f + n_v``): 608, 1200, 2248 (the issue's
  main configuration: 2 s of audio, 16 frames), 4484 and 7968 tokens.
* **Modes.** ``forward`` (``torch.no_grad``) and ``train`` (forward + ``mean(out**2)`` +
  backward, gradients reset each step), each in ``fp32`` and under ``bf16`` autocast.
* **Timing.** One fresh subprocess per ``(n, precision, mode)`` holds both models; after
  ``--warmup`` calls each, ``--repeats`` rounds run dense and ours *interleaved* (order
  alternating per round), so machine-load drift hits both alike; the median is reported. The
  same subprocess checks that both models compute the same function (max abs difference).
* **Memory.** One fresh subprocess per ``(model, n, precision, mode)`` runs one step and
  reports peak RSS (``VmHWM``) minus the RSS right after imports (so it includes weights,
  inputs, activations and gradients). Runs predicted to exceed the memory cap (default: the
  smaller of 24 GiB and what the machine has available) are skipped and reported as such;
  every memory child also runs under ``RLIMIT_AS`` so an allocation failure is caught and
  reported as ``oom`` rather than taking the machine down.
* **Peak.** Large ``torch.mm`` in bf16 and fp32 (3072^3), measured at the start and at the
  end of the run (the best is kept); MFU = achieved / that peak for the same precision.
* **FLOPs** are analytic and count only useful work (see :func:`forward_flops`): the linear
  layers (patch embeddings, q/k/v/out projections, GEGLU feed-forward, pooling) and the
  attention blocks the Zorro mask *allows* (``n_a^2 + n_v^2 + n_f * n`` query-key pairs per
  layer and head, 4 * d FLOPs each: ``QK^T`` and ``PV``). The same count is used for both
  models, so "TFLOP/s" of the dense model is useful TFLOP/s. A training step counts 3x the
  forward (backward = 2x forward).
* **Demo throughput.** Training clips/s (forward + backward + AdamW step) of the demo
  configuration (``--demo-config``), fp32 and bf16.

Outputs: a table on stdout, JSON (``--out``) and a PNG of time against ``n`` (``--plot``).

Usage::

    python benchmarks/bench_model.py            # full sweep (~10-15 min on 2 cores)
    python benchmarks/bench_model.py --quick    # n = 608 and 2248 only, fewer repeats
    python benchmarks/bench_model.py --demo-config '{"dim": 256, "batch": 16}'
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the modelbench package beside this file (also when loaded by path, as the tests do)
    sys.path.insert(0, str(HERE))

from modelbench.children import (  # noqa: E402  (re-exported: tests and notebooks use them from here)
    PROFILE_CATEGORIES, categorize, child_demo, child_main, child_memory, child_peak, child_profile, child_time,
)
from modelbench.childproc import run_script  # noqa: E402
from modelbench.report import evaluate_goals, machine_info, make_plot, print_table, _fmt  # noqa: E402
from modelbench.workload import (  # noqa: E402
    BATCH, DEMO_DEFAULT, DEMO_INPUT_KEYS, GIB, MAIN_N, MODEL_KW, SAMPLE_RATE, SIZES, VIDEO_HW, allowed_pairs,
    dense_score_bytes, forward_flops, layout_for, predict_peak_gib,
)


#: Environment of the memory children: glibc serves every allocation >= 64 KiB with its own
#: mmap and unmaps it on free, so RSS follows the live tensors instead of heap fragmentation
#: (the default dynamic threshold keeps freed tensors of up to 32 MiB in the heap). Same for
#: both models; timing children run with the default allocator settings.
MEMORY_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def run_child(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter; returns its result or ``{"status": "error", ...}``."""
    run = run_script(Path(__file__), task, timeout, MEMORY_CHILD_ENV if task["kind"] == "memory" else None)
    if run.returncode is None:
        return {"status": "timeout", "error": f"no result within {timeout:.0f} s"}
    if run.result is not None:
        run.result.setdefault("status", "ok")
        return run.result
    killed = run.returncode < 0 or run.returncode == 137
    return {"status": "oom" if killed else "error", "returncode": run.returncode, "error": " | ".join(run.tail)[-400:]}


def parse_demo_config(text: str | None) -> dict[str, Any]:
    """``--demo-config``: a JSON object, a path to a JSON file, or ``k=v,k=v`` (values JSON)."""
    cfg = dict(DEMO_DEFAULT)
    if not text:
        return cfg
    if os.path.exists(text):
        cfg.update(json.loads(Path(text).read_text()))
    elif text.lstrip().startswith("{"):
        cfg.update(json.loads(text))
    else:
        for item in text.split(","):
            key, _, value = item.partition("=")
            try:
                cfg[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                cfg[key.strip()] = value.strip()
    return cfg


def run_profiles(args: argparse.Namespace) -> int:
    """``--profile``: category breakdown of ours (and dense) at the main n, printed and saved."""
    lay = layout_for(MAIN_N)
    fl = forward_flops(lay["n_a"], lay["n_f"], lay["n_v"], batch=BATCH, dim=MODEL_KW["dim"], depth=MODEL_KW["depth"],
                       heads=MODEL_KW["heads"], dim_head=MODEL_KW["dim_head"])
    print(f"useful forward FLOPs at n={lay['n']}: " + ", ".join(f"{k} {v / 1e9:.1f} G" for k, v in fl.items()))
    report = []
    for model in ("ours", "dense"):
        for mode in args.modes:
            for prec in args.precisions:
                res = run_child({"kind": "profile", "n": MAIN_N, "model": model, "mode": mode, "precision": prec}, args.timeout)
                res.update(model=model, mode=mode, precision=prec)
                report.append(res)
                if res.get("status") != "ok":
                    print(f"{model} {mode} {prec}: {res}")
                    continue
                total = sum(res["categories_s"].values())
                print(f"\n{model} {mode} {prec}: step {res['wall_s']:.3f} s under the profiler")
                for cat, sec in res["categories_s"].items():
                    print(f"  {cat:<30} {sec:8.3f} s  {sec / total:6.1%}")
                print("  top ops: " + ", ".join(f"{k} {v:.3f}" for k, v in list(res["top_ops_s"].items())[:8]))
    out = args.out.with_name(args.out.stem + "_profile.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": lay, "flops_forward": fl, "profiles": report}, indent=1))
    print(f"\nwrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Zorro: block-sparse model vs dense seed-style reference (issue 7).")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="n = 608 and 2248 only, 2 repeats")
    ap.add_argument("--sizes", type=int, nargs="*", help=f"nominal sizes among {sorted(SIZES)}")
    ap.add_argument("--modes", nargs="*", default=["forward", "train"])
    ap.add_argument("--precisions", nargs="*", default=None,
                    help="fp32 and/or bf16 (default both; bf16 is dropped when a probe finds it emulated on this CPU)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up calls per model before timing")
    ap.add_argument("--repeats", type=int, default=None, help="timed interleaved rounds (default 3; 2 with --quick)")
    ap.add_argument("--dense-max-n", type=int, default=4500, help="largest nominal n at which the dense model is *timed* (memory is still probed)")
    ap.add_argument("--compile", choices=["none", "forward", "all"], default="forward",
                    help="also time torch.compile(ours) at the main n: forward only (default), forward+train, or not at all")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-measurement peak-memory subprocesses")
    ap.add_argument("--no-checkpointing", action="store_true",
                    help="do not time ours with activation checkpointing (ours+ckpt) at the main n in training")
    ap.add_argument("--mem-cap-gib", type=float, default=None, help="memory cap of a child (default: min(24, available - 1.5))")
    ap.add_argument("--demo-config", default=None, help="demo configuration: JSON object, JSON file or k=v,...; 'none' to skip")
    ap.add_argument("--profile", action="store_true",
                    help="only profile ours (and dense) at the main n with torch.profiler and print the breakdown")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per child")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_model.json")
    ap.add_argument("--plot", type=Path, default=HERE / "results" / "bench_model_scaling.png")
    args = ap.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    sizes = args.sizes or ([600, MAIN_N] if args.quick else sorted(SIZES))
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        ap.error(f"unknown sizes {unknown}; choose among {sorted(SIZES)}")
    repeats = args.repeats or (2 if args.quick else 3)
    info = machine_info()
    avail = info.get("mem_available_gib", 24.0)
    cap_gib = args.mem_cap_gib or max(2.0, min(24.0, avail - 1.5))
    cap_bytes = int(cap_gib * GIB)
    started = time.time()
    print(f"machine: {info.get('cpu')} x{info['cpus']}, torch {info['torch']} ({info['torch_threads']} threads, {info['cpu_capability']}), "
          f"flags {info.get('cpu_flags')}, load {info.get('loadavg_start')}, memory cap per child {cap_gib:.1f} GiB", flush=True)

    load1 = (info.get("loadavg_start") or (0.0,))[0]
    if load1 > 0.5 * (info["cpus"] or 1):
        info["busy_warning"] = f"load average {load1:.1f} on {info['cpus']} CPUs at start: timings are not reliable"
        print(f"WARNING: {info['busy_warning']} (threads wait for each other when another process holds a core)", flush=True)

    # A CPU without AVX512-BF16 / AMX emulates bf16 matmuls (measured on an AVX2 EPYC: ~100x
    # slower than fp32), so the bf16 rows would take hours and measure nothing useful. A small
    # probe decides; --precisions bf16 given explicitly still forces them.
    probe = run_child({"kind": "peak", "size": 512, "repeats": 3}, args.timeout)
    info["bf16_probe_512"] = probe
    precisions = list(args.precisions or ["fp32", "bf16"])
    if args.precisions is None and "bf16" in precisions and probe.get("bf16", 0.0) < 0.5 * probe.get("fp32", 0.0):
        precisions.remove("bf16")
        info["bf16_skipped"] = (f"bf16 matmul at {probe.get('bf16', 0):.4f} TFLOP/s vs fp32 {probe.get('fp32', 0):.4f} "
                                "on a 512^2 probe: no native bf16 on this CPU, bf16 rows skipped (--precisions fp32 bf16 forces them)")
        print(f"NOTE: {info['bf16_skipped']}", flush=True)
    args.precisions = precisions
    if args.profile:
        return run_profiles(args)
    peaks = [run_child({"kind": "peak", "precisions": precisions}, args.timeout)]
    print(f"matmul peak (start): {peaks[0]}", flush=True)

    rows: list[dict[str, Any]] = []
    mkw = MODEL_KW
    for nominal in sizes:
        lay = layout_for(nominal)
        fl = forward_flops(lay["n_a"], lay["n_f"], lay["n_v"], batch=BATCH, dim=mkw["dim"], depth=mkw["depth"],
                           heads=mkw["heads"], dim_head=mkw["dim_head"])
        for mode in args.modes:
            for prec in args.precisions:
                flops = fl["total"] * (3 if mode == "train" else 1)
                row: dict[str, Any] = {
                    "nominal_n": nominal, "n": lay["n"], "n_a": lay["n_a"], "n_f": lay["n_f"], "n_v": lay["n_v"],
                    "mode": mode, "precision": prec, "flops": flops, "flops_parts_forward": fl,
                    "allowed_pairs": allowed_pairs(lay["n_a"], lay["n_f"], lay["n_v"]), "models": {},
                }
                timed = ["ours"]
                dense_pred = predict_peak_gib("dense", lay["n"], prec, mode)
                if nominal <= args.dense_max_n and dense_pred <= cap_gib:
                    timed.insert(0, "dense")
                if nominal == MAIN_N and (args.compile == "all" or (args.compile == "forward" and mode == "forward")):
                    timed.append("ours+compile")
                if nominal == MAIN_N and mode == "train" and not args.no_checkpointing:
                    timed.append("ours+ckpt")
                t0 = time.time()
                res = run_child({"kind": "time", "n": nominal, "precision": prec, "mode": mode, "models": timed,
                                 "warmup": args.warmup, "repeats": repeats}, args.timeout)
                if res.get("status") != "ok":
                    print(f"  ! timing n={nominal} {mode} {prec} failed: {res}", flush=True)
                for name in timed:
                    m = row["models"].setdefault(name, {})
                    ts = res.get("times", {}).get(name)
                    if ts:
                        med = statistics.median(ts)
                        m.update(times=ts, median_s=med, tflops=flops / med / 1e12, first_call_s=res["first_call_s"][name],
                                 cpu_times=res["cpu_times"][name], median_cpu_s=statistics.median(res["cpu_times"][name]))
                row["max_abs_diff"] = max(res.get("max_abs_diff", {}).values(), default=None)
                row["max_abs_diff_by_model"] = res.get("max_abs_diff")
                if "dense" not in timed:
                    why = (f"not timed: predicted peak {dense_pred:.1f} GiB > cap {cap_gib:.1f} GiB" if dense_pred > cap_gib
                           else f"not timed above n={args.dense_max_n} (--dense-max-n)")
                    row["models"].setdefault("dense", {})["note"] = why
                if not args.no_memory:
                    for name in ("dense", "ours") + (("ours+ckpt",) if "ours+ckpt" in timed else ()):
                        m = row["models"].setdefault(name, {})
                        pred = predict_peak_gib("dense" if name == "dense" else "ours", lay["n"], prec, mode)
                        m["predicted_peak_gib"] = pred
                        if pred > cap_gib:
                            m["mem_status"] = "not runnable"
                            m["note"] = f"OOM / not runnable within {cap_gib:.0f} GiB (predicted {pred:.1f} GiB)"
                            continue
                        mres = run_child({"kind": "memory", "n": nominal, "precision": prec, "mode": mode, "model": name,
                                          "mem_cap_bytes": cap_bytes}, args.timeout)
                        m["mem_status"] = mres.get("status")
                        if mres.get("status") == "ok":
                            m["peak_mib"] = mres["peak_mib"]
                            m["memory_child_step_s"] = mres["step_s"]  # one cold step, not interleaved
                        else:
                            m["note"] = f"{mres.get('status')} within {cap_gib:.0f} GiB cap: {mres.get('error', '')[:120]}"
                rows.append(row)
                d, o = row["models"].get("dense", {}), row["models"].get("ours", {})
                if d.get("median_s") and o.get("median_s"):
                    row["speedup"] = d["median_s"] / o["median_s"]
                    row["speedup_cpu_time"] = d["median_cpu_s"] / o["median_cpu_s"]
                if d.get("peak_mib") and o.get("peak_mib"):
                    row["memory_ratio"] = o["peak_mib"] / d["peak_mib"]
                for variant in ("ours+compile", "ours+ckpt"):
                    c = row["models"].get(variant)
                    if c and c.get("median_s") and d.get("median_s"):
                        c["speedup_vs_dense"] = d["median_s"] / c["median_s"]
                    if c and c.get("peak_mib") and d.get("peak_mib"):
                        c["memory_ratio_vs_dense"] = c["peak_mib"] / d["peak_mib"]
                print(f"n={lay['n']:>5} {mode:>7} {prec}: " + ", ".join(
                    f"{k} {_fmt(v.get('median_s'))} s" + (f" {v['peak_mib']:.0f} MiB" if v.get("peak_mib") else "")
                    for k, v in row["models"].items()) + f"  [{time.time() - t0:.0f} s]", flush=True)

    demo = None
    if (args.demo_config or "").lower() != "none":
        demo_cfg = parse_demo_config(args.demo_config)
        demo = run_child({"kind": "demo", "config": demo_cfg, "warmup": 2, "repeats": 3 if args.quick else 5,
                          "precisions": args.precisions, "pretrain": demo_cfg == DEMO_DEFAULT}, args.timeout)
        demo["config"] = demo_cfg
        if demo.get("status") == "ok":
            rates = ", ".join(f"{demo[p]['clips_per_s']:.1f} clips/s {p}" for p in args.precisions if p in demo)
            print(f"demo config {demo_cfg}: train {rates} (n={demo['layout']})", flush=True)
            pre = demo.get("pretrain")
            if pre:
                print(f"demo pre-training step (batch {pre['batch']}, two views, fp32): audio augmented on the waveform "
                      f"{pre['waveform']['clips_per_s']:.1f} clips/s, in the fbank domain {pre['fbank']['clips_per_s']:.1f} "
                      f"clips/s ({pre['fbank_speedup']:.2f}x)", flush=True)
        else:
            print(f"demo failed: {demo}", flush=True)

    peaks.append(run_child({"kind": "peak", "precisions": args.precisions}, args.timeout))
    peak = {p: max(x.get(p, 0.0) for x in peaks) for p in ("bf16", "fp32")}
    for r in rows:
        for m in r["models"].values():
            if m.get("tflops"):
                m["mfu"] = m["tflops"] / peak[r["precision"]]
    big = max((s for s in sizes if s >= 8000), default=None)
    goals = evaluate_goals(rows, big)
    if info.get("bf16_skipped"):
        for name, target in (("forward speedup bf16", ">= 6.0x"), ("train speedup bf16", ">= 3.0x"), ("bf16 forward MFU", ">= 50%")):
            goals.append({"goal": name, "value": "not measured (no native bf16 on this CPU)", "target": target, "met": False})
    try:
        info["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    print_table(rows, peak)
    if goals:
        print("\ngoals at the main configuration:")
        for g in goals:
            v = g["value"]
            shown = f"{v:.3f}" if isinstance(v, float) else str(v)
            print(f"  [{'met' if g['met'] else 'MISSED'}] {g['goal']}: {shown} (target {g['target']})")
    plot = make_plot(rows, args.plot)
    out = {
        "benchmark": "zorro bench_model (issue 7)",
        "machine": info,
        "peak_tflops": peak,
        "peak_measurements": peaks,
        "model": MODEL_KW,
        "batch": BATCH,
        "sizes": {k: SIZES[k] for k in sizes},
        "settings": {"warmup": args.warmup, "repeats": repeats, "quick": args.quick, "mem_cap_gib": cap_gib,
                     "dense_max_n": args.dense_max_n, "compile": args.compile},
        "flops_formula": forward_flops.__doc__,
        "results": rows,
        "goals": goals,
        "demo": demo,
        "plot": plot,
        "elapsed_s": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"\nwrote {args.out}" + (f" and {plot}" if plot else "") + f" in {time.time() - started:.0f} s "
          f"(load average at start {info.get('loadavg_start')}, end {info.get('loadavg_end')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
