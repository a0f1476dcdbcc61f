"""The fast path on this machine: eager and compiled, each attention backend, forward and
training step, against the seed -- one table per machine.

At the top: the CPU model and its bf16 capability (AMX, AVX512-BF16 or emulated, from
``/proc/cpuinfo``); bf16 rows run only where bf16 is native. Then, for every precision, mode
(``forward`` under ``no_grad``; ``train``: forward + ``mean(out**2)`` + backward), backend
(``sdpa``, ``flex``, ``eager``) and compiled or not (``torch.compile(model, fullgraph=True)``):

* seed and ours timed in **one process, interleaved** (order alternating each round; median
  of ``--repeats`` after warm-up, the compilation included in the warm-up), so load drift
  hits both alike; ``seed/ours`` is the ratio of those medians. The seed is
  :class:`zorro.reference.DenseZorro` (the seed's function the seed's way); ours is
  :meth:`zorro.Zorro.from_zorro_pytorch` of the same weights, so both compute one function
  (the max abs difference is checked and printed in the JSON);
* MFU: useful FLOPs (:func:`modelbench.workload.forward_flops`; training counts 3x) per
  second over a ``torch.mm`` peak measured in this run for the same precision (before and
  after the rows; the higher counts, so a busy moment does not lower the peak);
* the SDPA kernel's own rate on one layer's attention calls (forward, and forward +
  backward), and for the ``sdpa`` rows a *floor*: the time of the step if the attention FLOPs
  ran at that rate and every other FLOP at the ``torch.mm`` peak. Where ours is near its
  floor, only a faster attention kernel makes the step faster;
* peak memory of one step of ours above what was resident before it (weights, inputs and a
  warmed-up model: RSS high-water mark reset via ``/proc/self/clear_refs``), measured before
  the timing while glibc serves every allocation >= 64 KiB with its own mmap (RSS then follows
  the live tensors). The timing runs after glibc is set back to keeping freed blocks of up to
  32 MiB in its heap, where its default settles: serving every block by mmap slows both
  models' steps by ~1.4x through page faults, and the times are meant to be what a user gets.

A combination that cannot run says why in the ``note`` column (e.g. FlexAttention has no
CPU backward: ``train`` with ``flex`` on CPU).

Usage::

    python benchmarks/bench_fastpath.py                 # n = 608 (batch 2, dim 512, depth 4)
    python benchmarks/bench_fastpath.py --size 2248     # the main configuration of bench_model.py
    python benchmarks/bench_fastpath.py --precisions fp32 bf16   # force bf16 rows
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
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from modelbench.childproc import best_seconds, emit_result, reset_peak_rss, rss_kib, run_script  # noqa: E402
from modelbench.fastpath import best_rates, cpu_facts, floor_s, format_report, precisions_to_run  # noqa: E402
from modelbench.workload import BATCH, MODEL_KW, SIZES, VIDEO_HW, allowed_pairs, forward_flops, layout_for  # noqa: E402

BACKENDS = ("sdpa", "flex", "eager")


#: glibc's ``mallopt`` parameter numbers of the trim and mmap thresholds, and the values its
#: dynamic thresholds rise to (the default allocator's steady state on 64-bit Linux).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_STEADY_STATE = {_M_MMAP_THRESHOLD: 32 * 1024 * 1024, _M_TRIM_THRESHOLD: 64 * 1024 * 1024}


def _mallopt(settings: dict[int, int]) -> None:
    """glibc's ``mallopt(param, value)`` for each item; nothing where the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        for param, value in settings.items():
            libc.mallopt(param, value)
    except (OSError, AttributeError):
        pass


def _malloc_default_steady_state() -> None:
    """Let glibc keep freed blocks of up to 32 MiB in its heap again (undoes
    ``MALLOC_MMAP_THRESHOLD_`` and :func:`_malloc_every_block_mapped`)."""
    _mallopt(_HEAP_STEADY_STATE)


def _malloc_every_block_mapped() -> None:
    """From now on glibc serves every allocation >= 64 KiB with its own mmap and unmaps it on
    free, so RSS follows the live tensors (what ``MALLOC_MMAP_THRESHOLD_=65536`` does from a
    process's start; the benchmark sets both)."""
    _mallopt({_M_MMAP_THRESHOLD: 65536})


def _peak_step_mib(step) -> float | None:
    """Peak RSS of one call of ``step`` above the RSS before it (MiB); None without clear_refs."""
    import gc

    gc.collect()
    if not reset_peak_rss():
        return None
    base = rss_kib("VmRSS")
    step()
    return max(0.0, (rss_kib("VmHWM") - base) / 1024)


def child(task: dict[str, Any]) -> dict[str, Any]:
    """One (precision, mode, backend, compiled) measurement: seed and ours in this process."""
    import warnings

    import torch

    from zorro import Zorro
    from zorro.reference import DenseZorro

    warnings.filterwarnings("ignore")
    _malloc_every_block_mapped()  # for the memory measurement; set back before the timing
    lay = layout_for(task["n"])
    torch.manual_seed(0)
    seed = DenseZorro(**MODEL_KW)
    kw = {k: v for k, v in MODEL_KW.items() if k not in ("dim", "depth", "num_fusion_tokens")}
    ours = Zorro.from_zorro_pytorch(seed.state_dict(), attn_backend=task["backend"], **kw)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(BATCH, lay["samples"], generator=g) * 0.1
    video = torch.randn(BATCH, 3, lay["frames"], VIDEO_HW, VIDEO_HW, generator=g)
    bf16 = task["precision"] == "bf16"

    def step_fn(model, call):
        if task["mode"] == "forward":
            model.eval()

            def step():
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return call(audio=audio, video=video)
        else:
            model.train()
            params = list(model.parameters())

            def step():
                for p in params:
                    p.grad = None
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = call(audio=audio, video=video)
                out.float().square().mean().backward()
                return out
        return step

    call = torch.compile(ours, fullgraph=True) if task["compiled"] else ours
    steps = {"seed": step_fn(seed, seed), "ours": step_fn(ours, call)}
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    try:
        t0 = time.perf_counter()
        first = steps["ours"]().detach().float()
        out["first_call_s"] = time.perf_counter() - t0  # compilation included when compiled
    except (ValueError, NotImplementedError, RuntimeError) as err:
        text = str(err)
        if "raised exception " in text:  # fullgraph=True: the library's own error, inside Dynamo's
            text = text.split("raised exception ", 1)[1]
        return {"status": "unsupported", "note": f"{type(err).__name__}: {text.splitlines()[0][:200]}"}
    out["max_abs_diff"] = float((first - steps["seed"]().detach().float()).abs().max())
    for _ in range(max(task["warmup"] - 1, 0)):
        for s in steps.values():
            s()
    out["peak_mib"] = _peak_step_mib(steps["ours"])
    out["seed_peak_mib"] = _peak_step_mib(steps["seed"])
    _malloc_default_steady_state()
    for s in steps.values():  # one step each to fill the heap before the timing
        s()
    times: dict[str, list[float]] = {"seed": [], "ours": []}
    order = ["seed", "ours"]
    for r in range(task["repeats"]):
        for k in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    out["times"] = times
    return out


def peak_child(task: dict[str, Any]) -> dict[str, Any]:
    """Per precision: the best ``torch.mm`` TFLOP/s of a ``size``-square product and of the
    workload's q/k/v projection (``rows x dim @ dim x 3 dim``), and under ``"attention"`` the
    SDPA kernel's TFLOP/s on one layer's attention as the ``sdpa`` backend calls it under the
    ``zorro`` rule (``blocks = (n_a, n_f, n_v)``: audio on audio, fusion on every token, video
    on video; views of a fused ``(b, n, 3, h, d)`` projection, nothing assembled around the
    calls): ``forward`` under ``no_grad``, ``train`` forward + backward counted as 3x the
    forward's FLOPs (the MFU convention)."""
    import torch
    import torch.nn.functional as F

    size = task.get("size", 2048)
    n_a, n_f, n_v = task["blocks"]
    n = n_a + n_f + n_v
    heads, dim_head = MODEL_KW["heads"], MODEL_KW["dim_head"]
    attn_flops = 4.0 * BATCH * heads * dim_head * allowed_pairs(n_a, n_f, n_v)
    spans = ((slice(0, n_a), slice(0, n_a)), (slice(n_a, n_a + n_f), slice(0, n)), (slice(n_a + n_f, n), slice(n_a + n_f, n)))
    res: dict[str, Any] = {"attention": {}}
    for name in task["precisions"]:
        dtype = torch.bfloat16 if name == "bf16" else torch.float32
        rates = []
        for m, k, c in ((size, size, size), (task.get("rows", size), MODEL_KW["dim"], 3 * MODEL_KW["dim"])):
            a, b = torch.randn(m, k).to(dtype), torch.randn(k, c).to(dtype)
            rates.append(2.0 * m * k * c / best_seconds(lambda: torch.mm(a, b), rounds=6) / 1e12)
        res[name] = max(rates)
        qkv = torch.randn(BATCH, n, 3, heads, dim_head, dtype=dtype, requires_grad=True)
        grads = [torch.randn(BATCH, heads, qs.stop - qs.start, dim_head, dtype=dtype) for qs, _ in spans]

        def attend():
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            return [F.scaled_dot_product_attention(q[:, :, qs], k[:, :, ks], v[:, :, ks], scale=dim_head**-0.5)
                    for qs, ks in spans]

        def train():
            torch.autograd.backward(attend(), grads)
            qkv.grad = None

        with torch.no_grad():
            fwd = best_seconds(attend)
        res["attention"][name] = {"blocks": [n_a, n_f, n_v], "forward": attn_flops / fwd / 1e12,
                                  "train": 3 * attn_flops / best_seconds(train) / 1e12}
    return res


def run_child(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    """``task`` in a fresh interpreter; its JSON result, or a status saying why there is none."""
    # glibc serves allocations >= 64 KiB with their own mmap and unmaps them on free, so RSS
    # follows the live tensors (else a step reuses the heap freed by the warm-up: peak ~0);
    # the child sets it back before the timing
    env = None if task.get("kind") == "peak" else {"MALLOC_MMAP_THRESHOLD_": "65536"}
    run = run_script(Path(__file__), task, timeout, env, tail_lines=1)
    if run.returncode is None:
        return {"status": "timeout", "note": f"no result within {timeout:.0f} s"}
    if run.result is not None:
        run.result.setdefault("status", "ok")
        return run.result
    return {"status": "error", "note": f"exit {run.returncode}: {(run.tail or [''])[0][:160]}"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Eager / compiled x attention backend x forward / training, against the seed.")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=600, help=f"nominal n among {sorted(SIZES)} (default 600: n = 608)")
    ap.add_argument("--precisions", nargs="*", default=None, help="default: fp32, and bf16 where the CPU has it natively")
    ap.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--modes", nargs="*", default=["forward", "train"], choices=["forward", "train"])
    ap.add_argument("--compiled", nargs="*", default=["no", "yes"], choices=["no", "yes"])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fastpath.json")
    args = ap.parse_args(argv)
    if args.child:
        task = json.loads(args.child)
        res = peak_child(task) if task.get("kind") == "peak" else child(task)
        emit_result(res)
        return 0
    if args.size not in SIZES:
        ap.error(f"--size must be one of {sorted(SIZES)}")
    try:
        facts = cpu_facts(Path("/proc/cpuinfo").read_text())
    except OSError:
        facts = cpu_facts("")
    facts["cores"] = os.cpu_count()
    precisions, skipped = precisions_to_run(facts["bf16"], args.precisions)
    print(f"CPU: {facts['cpu']} ({facts['cores']} cores); bf16: {facts['bf16']}" + (f"; {skipped}" if skipped else ""), flush=True)
    started = time.time()
    load_start = os.getloadavg()
    lay = layout_for(args.size)
    peak_task = {"kind": "peak", "precisions": precisions, "blocks": [lay["n_a"], lay["n_f"], lay["n_v"]], "rows": BATCH * lay["n"]}
    peaks = run_child(peak_task, args.timeout)
    parts = forward_flops(lay["n_a"], lay["n_f"], lay["n_v"], batch=BATCH, dim=MODEL_KW["dim"], depth=MODEL_KW["depth"],
                          heads=MODEL_KW["heads"], dim_head=MODEL_KW["dim_head"])
    fl = parts["total"]
    rows = []
    for prec in precisions:
        for mode in args.modes:
            for backend in args.backends:
                for compiled in args.compiled:
                    task = {"n": args.size, "precision": prec, "mode": mode, "backend": backend, "compiled": compiled == "yes",
                            "warmup": args.warmup, "repeats": args.repeats}
                    t0 = time.time()
                    res = run_child(task, args.timeout)
                    row = {k: task[k] for k in ("precision", "mode", "backend", "compiled")}
                    row["status"] = res.get("status")
                    if res.get("status") == "ok":
                        row.update(seed_s=statistics.median(res["times"]["seed"]), ours_s=statistics.median(res["times"]["ours"]),
                                   peak_mib=res.get("peak_mib"), seed_peak_mib=res.get("seed_peak_mib"),
                                   first_call_s=res.get("first_call_s"), max_abs_diff=res.get("max_abs_diff"), times=res["times"])
                    else:
                        row["note"] = res.get("note", res.get("status"))
                    rows.append(row)
                    print(f"  {prec} {mode} {backend} compiled={compiled}: "
                          + (f"seed {row['seed_s'] * 1e3:.0f} ms, ours {row['ours_s'] * 1e3:.0f} ms" if "ours_s" in row else row.get("note", ""))
                          + f"  [{time.time() - t0:.0f} s]", flush=True)
    # the machine's best: the peaks measured before and after the rows, the higher of each
    peaks = best_rates(peaks, run_child(peak_task, args.timeout))
    attention = peaks.get("attention", {})
    for row in rows:
        prec, mode = row["precision"], row["mode"]
        if row.get("ours_s") and peaks.get(prec):
            row["mfu"] = fl * (3 if mode == "train" else 1) / row["ours_s"] / 1e12 / peaks[prec]
            if row["backend"] == "sdpa" and prec in attention:
                row["floor_s"] = floor_s(parts, mode, peaks[prec], attention[prec])
    workload = (f"n = {lay['n']} tokens ({lay['n_a']} audio + {lay['n_f']} fusion + {lay['n_v']} video), batch {BATCH}, "
                f"dim {MODEL_KW['dim']}, depth {MODEL_KW['depth']}, {MODEL_KW['heads']} heads x {MODEL_KW['dim_head']}; "
                f"median of {args.repeats} interleaved rounds; load average {load_start[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print()
    print(format_report(facts, rows, peaks={k: v for k, v in peaks.items() if isinstance(v, float)}, workload=workload,
                        skipped=skipped, attention=attention, attention_share=parts["attention"] / fl))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": facts, "peaks_tflops": peaks, "workload": workload, "flops_forward": fl,
                                    "flops_forward_parts": parts,
                                    "rows": rows, "elapsed_s": time.time() - started}, indent=1))
    print(f"\nwrote {args.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
