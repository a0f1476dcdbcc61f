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
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GIB = 1024**3

#: n (nominal) -> (audio seconds, video frames); video is always 224x224, batch 2.
SIZES: dict[int, tuple[float, int]] = {
    600: (0.6, 4),
    1200: (1.2, 8),
    2248: (2.0, 16),
    4500: (4.0, 32),
    8000: (7.4, 56),
}
MAIN_N = 2248
BATCH = 2
VIDEO_HW = 224
SAMPLE_RATE = 16000
#: The seed-compatible model of the issue; SpecAugment off so train mode is the same function.
MODEL_KW: dict[str, Any] = dict(
    dim=512, depth=4, heads=8, dim_head=64, num_fusion_tokens=16,
    spec_aug_freq_mask=0, spec_aug_time_mask=0, spec_aug_stretch_factor=1.0,
)
def _demo_default() -> dict[str, Any]:
    """The AV-digits demo's model and input geometry (read from the recipe, so they match)."""
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS

    data = DEMO_SETTINGS["data"]
    return dict(
        DEMO_SETTINGS["model"],
        batch=DEMO_SETTINGS["finetune"]["data"]["batch_size"], audio_seconds=data["duration"],
        frames=data["num_frames"], size=data["image_size"],
    )


#: The demo configuration. Keys ``batch``, ``audio_seconds``, ``frames``, ``size`` describe
#: the inputs; all others go to ``Zorro``.
DEMO_DEFAULT: dict[str, Any] = _demo_default()
DEMO_INPUT_KEYS = ("batch", "audio_seconds", "frames", "size")


# ============================================================================ analytics


def layout_for(n_nominal: int) -> dict[str, int]:
    """Token counts of the benchmark input of nominal size ``n_nominal``.

    Seed front-end: ``n_fft=128`` gives 65 frequency bins (4 patch rows of 16); hop 12
    samples with centring gives ``samples // 12 + 1`` frames.
    """
    seconds, frames = SIZES[n_nominal]
    samples = int(round(seconds * SAMPLE_RATE))
    spec_frames = samples // 12 + 1
    n_a = (65 // 16) * (spec_frames // 16)
    n_v = (frames // 2) * (VIDEO_HW // 16) ** 2
    n_f = MODEL_KW["num_fusion_tokens"]
    return dict(n_a=n_a, n_f=n_f, n_v=n_v, n=n_a + n_f + n_v, samples=samples, frames=frames)


def allowed_pairs(n_a: int, n_f: int, n_v: int) -> int:
    """Query-key pairs the Zorro mask allows per layer and head: ``n_a^2 + n_v^2 + n_f * n``."""
    return n_a * n_a + n_v * n_v + n_f * (n_a + n_f + n_v)


def forward_flops(
    n_a: int, n_f: int, n_v: int, *, batch: int, dim: int, depth: int, heads: int, dim_head: int,
    ff_mult: float = 4, returns: int = 3, audio_patch: int = 256, video_patch: int = 1536,
) -> dict[str, float]:
    """Useful FLOPs of one forward pass (multiply-add = 2 FLOPs), by part.

    * patch embeddings: ``2 * b * (n_a * P_a + n_v * P_v) * D``
    * per layer, linear: ``2 * b * n * (D * 3Hd + Hd * D + D * 2I + I * D)`` with
      ``I = int(D * ff_mult * 2 / 3)`` (q/k/v, out, GEGLU in, GEGLU out)
    * per layer, attention: ``4 * b * H * d * (n_a^2 + n_v^2 + n_f * n)`` (``QK^T`` and ``PV``
      over the allowed blocks only)
    * pooling: ``2 * b * n * D * 2Hd`` (k/v of every token) + ``2 * b * r * (D*Hd + Hd*D)``
      + attention over at most every token, ``4 * b * H * d * r * n``
    """
    n = n_a + n_f + n_v
    hd = heads * dim_head
    inner = int(dim * ff_mult * 2 / 3)
    embed = 2.0 * batch * (n_a * audio_patch + n_v * video_patch) * dim
    linear = depth * 2.0 * batch * n * (dim * 3 * hd + hd * dim + dim * 2 * inner + inner * dim)
    attention = depth * 4.0 * batch * heads * dim_head * allowed_pairs(n_a, n_f, n_v)
    pool = 2.0 * batch * n * dim * 2 * hd + 2.0 * batch * returns * 2 * dim * hd + 4.0 * batch * heads * dim_head * returns * n
    return dict(embed=embed, linear=linear, attention=attention, pool=pool, total=embed + linear + attention + pool)


def dense_score_bytes(n: int, precision: str) -> float:
    """Bytes of one dense ``(b, h, n, n)`` score tensor of the reference."""
    return BATCH * MODEL_KW["heads"] * n * n * (4 if precision == "fp32" else 2)


def predict_peak_gib(model: str, n: int, precision: str, mode: str) -> float:
    """Rough peak-memory prediction (GiB), used only to skip runs that cannot fit.

    Dense: ~3 score tensors live at once in a forward layer (scores, masked, softmax); a
    training step keeps one per layer (softmax output) plus ~3 transients in backward.
    Ours: activations grow linearly in ``n``; a generous linear bound.
    """
    base = 1.0
    if model == "dense":
        s = dense_score_bytes(n, precision) / GIB
        return base + (3 * s if mode == "forward" else MODEL_KW["depth"] * s + 3 * s)
    return base + n / 8000 * (1.0 if mode == "forward" else 4.0)


# ============================================================================ child side


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # fallback (KiB on Linux)
    return int(ru)


def _build(n_nominal: int, which: tuple[str, ...], seed: int = 0):
    import torch

    from zorro import Zorro
    from zorro.reference import DenseZorro

    lay = layout_for(n_nominal)
    torch.manual_seed(seed)
    dense = DenseZorro(**MODEL_KW)
    models = {}
    if "dense" in which:
        models["dense"] = dense
    kw = {k: v for k, v in MODEL_KW.items() if k not in ("dim", "depth", "num_fusion_tokens")}
    if "ours" in which or "ours+compile" in which:
        ours = Zorro.from_zorro_pytorch(dense.state_dict(), **kw)
        if "ours" in which:
            models["ours"] = ours
        if "ours+compile" in which:
            models["ours+compile"] = torch.compile(ours, fullgraph=True)
    if "ours+ckpt" in which:  # its own copy of the weights: its gradients must not meet ours'
        models["ours+ckpt"] = Zorro.from_zorro_pytorch(dense.state_dict(), **kw).set_grad_checkpointing(True)
    del dense  # a memory child of ours must not hold the dense weights too (models keeps it when timed)
    g = torch.Generator().manual_seed(seed + 1)
    audio = torch.randn(BATCH, lay["samples"], generator=g) * 0.1
    video = torch.randn(BATCH, 3, lay["frames"], VIDEO_HW, VIDEO_HW, generator=g)
    return models, audio, video


def _step_fn(model, audio, video, precision: str, mode: str):
    import torch

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    if mode == "forward":
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                return model(audio=audio, video=video)

    else:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]

        def step():
            for p in params:
                p.grad = None
            with autocast():
                out = model(audio=audio, video=video)
            out.float().square().mean().backward()
            return out

    return step


def child_time(task: dict[str, Any]) -> dict[str, Any]:
    """Time the models of ``task`` interleaved in this process; returns per-model seconds."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="audio features")
    names = tuple(task["models"])
    models, audio, video = _build(task["n"], names)
    steps = {k: _step_fn(m, audio, video, task["precision"], task["mode"]) for k, m in models.items()}
    result: dict[str, Any] = {"threads": torch.get_num_threads()}
    # Same function? Compare outputs of the first step of every model against the first.
    outs = {}
    first_call = {}
    for k, step in steps.items():
        t0 = time.perf_counter()
        outs[k] = step().detach().float()
        first_call[k] = time.perf_counter() - t0
    ref = next(iter(outs.values()))
    result["max_abs_diff"] = {k: float((o - ref).abs().max()) for k, o in outs.items()}
    result["first_call_s"] = first_call
    for _ in range(max(task["warmup"] - 1, 0)):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    for r in range(task["repeats"]):
        for k in order if r % 2 == 0 else order[::-1]:
            c0, t0 = time.process_time(), time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    result["times"] = times
    result["cpu_times"] = cpu  # process CPU seconds (all threads): less sensitive to other load
    return result


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child_memory(task: dict[str, Any]) -> dict[str, Any]:
    """One step of one model; peak RSS above the baseline (MiB).

    RSS also counts the library code a step touches for the first time (file-backed pages
    of libtorch, MKL, OpenMP): 20-50 MiB that varied with the installation, not with the
    model (same anonymous memory, 28 MiB more peak RSS in a fresh clone's environment than
    in the development one). So the child first runs one step of the same model and mode at
    the smallest size, frees it, resets the high-water mark and only then takes the
    baseline: the peak then counts the weights, inputs, activations and gradients of the
    measured step. ``file_mib`` reports the file-backed growth that remains.
    """
    import gc
    import warnings

    import torch  # noqa: F401 - part of the import baseline

    from zorro import Zorro  # noqa: F401
    from zorro.reference import DenseZorro  # noqa: F401

    warnings.filterwarnings("ignore", message="audio features")
    warm = min(SIZES)
    models, audio, video = _build(warm, (task["model"],))
    _step_fn(models[task["model"]], audio, video, task["precision"], task["mode"])()
    del models, audio, video
    gc.collect()
    reset = _reset_peak_rss()
    base, base_file = _rss_kib("VmRSS"), _rss_kib("RssFile")
    try:
        models, audio, video = _build(task["n"], (task["model"],))
        step = _step_fn(models[task["model"]], audio, video, task["precision"], task["mode"])
        t0 = time.perf_counter()
        step()
        elapsed = time.perf_counter() - t0
    except (RuntimeError, MemoryError) as err:
        if "alloc" in str(err).lower() or isinstance(err, MemoryError):
            return {"status": "oom", "error": str(err).splitlines()[0][:200], "peak_mib": (_rss_kib("VmHWM") - base) / 1024}
        raise
    return {"status": "ok", "peak_mib": (_rss_kib("VmHWM") - base) / 1024, "step_s": elapsed,
            "file_mib": (_rss_kib("RssFile") - base_file) / 1024, "warmed_up_at": warm, "peak_reset": reset}


def child_peak(task: dict[str, Any]) -> dict[str, Any]:
    """Matmul peak (TFLOP/s) of a square ``torch.mm`` in bf16 and fp32: best of a few.

    ``task["precisions"]`` limits the dtypes (default both); ``task["size"]`` the side.
    """
    import torch

    size = task.get("size", 3072)
    wanted = task.get("precisions", ["bf16", "fp32"])
    out = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        if name not in wanted:
            continue
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        torch.mm(a, b)
        best = math.inf
        for _ in range(task.get("repeats", 4)):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
        out[name] = 2.0 * size**3 / best / 1e12
    return out


def child_demo(task: dict[str, Any]) -> dict[str, Any]:
    """Training throughput (clips/s) of the demo configuration: fwd + bwd + AdamW step."""
    import warnings

    import torch

    from zorro import Zorro

    warnings.filterwarnings("ignore", message="audio features")
    cfg = dict(task["config"])
    inputs = {k: cfg.pop(k) for k in DEMO_INPUT_KEYS if k in cfg}
    batch = int(inputs.get("batch", 32))
    torch.manual_seed(0)
    model = Zorro(**cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    audio = torch.randn(batch, int(inputs.get("audio_seconds", 1.0) * model.config.sample_rate)) * 0.1
    size = int(inputs.get("size", 32))
    video = torch.randn(batch, model.config.video_channels, int(inputs.get("frames", 8)), size, size)
    result: dict[str, Any] = {"batch": batch, "model": model.config.to_dict(), "inputs": inputs}
    for precision in task.get("precisions", ["fp32", "bf16"]):
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(audio=audio, video=video)
            out.float().square().mean().backward()
            opt.step()

        for _ in range(task["warmup"]):
            step()
        times = []
        for _ in range(task["repeats"]):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        result[precision] = {"times": times, "median_s": med, "clips_per_s": batch / med}
    with torch.no_grad():
        feats = model.forward_features(audio=audio[:1], video=video[:1])
    result["layout"] = dict(n_a=feats.layout.num_audio, n_f=feats.layout.num_fusion, n_v=feats.layout.num_video)
    if task.get("pretrain"):
        result["pretrain"] = _demo_pretrain_steps(cfg, inputs, task)
    return result


def _demo_pretrain_steps(cfg: dict[str, Any], inputs: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The demo's pre-training step (two augmented views, contrastive losses, AdamW) with the
    audio augmented on the waveform against in the fbank domain, steps interleaved, fp32.

    The fbank-domain step reads features computed once per clip, as the demo's cached
    training set provides them; the waveform step re-analyses both views every step.
    """
    import torch

    from zorro import Zorro
    from zorro.recipes.avdigits_demo import DEMO_SETTINGS
    from zorro.train import TrainConfig, build_task

    pre = DEMO_SETTINGS["pretrain"]
    batch = int(pre["data"]["batch_size"])
    objectives, optimizers = {}, {}
    for domain in ("waveform", "fbank"):
        torch.manual_seed(0)
        objective = pre["objective"]
        tc = TrainConfig(task="pretrain", model={"arch": dict(cfg)},
                         objective={**objective, "augment": {**objective["augment"], "audio_domain": domain}})
        objectives[domain] = build_task(tc, Zorro(**cfg), None).train()
        optimizers[domain] = torch.optim.AdamW(objectives[domain].parameters(), lr=1e-4)
    frontend = objectives["fbank"].task.backbone.audio_frontend
    audio = torch.randn(batch, int(inputs.get("audio_seconds", 1.0) * frontend.sample_rate)) * 0.1
    size = int(inputs.get("size", 32))
    video = torch.rand(batch, 3, int(inputs.get("frames", 8)), size, size)
    ones = torch.ones(batch, dtype=torch.bool)
    with torch.no_grad():
        cached = frontend.features(audio)
    batches = {"waveform": {"audio": audio, "video": video, "has_audio": ones, "has_video": ones},
               "fbank": {"audio": audio, "audio_features": cached, "video": video, "has_audio": ones, "has_video": ones}}
    times: dict[str, list[float]] = {d: [] for d in objectives}
    for i in range(task["warmup"] + task["repeats"]):
        for domain, objective in objectives.items():
            t0 = time.perf_counter()
            optimizers[domain].zero_grad(set_to_none=True)
            loss, _ = objective(batches[domain])
            loss.backward()
            optimizers[domain].step()
            if i >= task["warmup"]:
                times[domain].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"batch": batch, "augment": pre["objective"]["augment"]}
    for domain, ts in times.items():
        med = statistics.median(ts)
        out[domain] = {"times": ts, "median_s": med, "clips_per_s": batch / med}
    out["fbank_speedup"] = out["waveform"]["median_s"] / out["fbank"]["median_s"]
    return out


#: Profiler op-name prefixes -> category of the breakdown (first match wins; self CPU time).
PROFILE_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("aten::_scaled_dot_product", "aten::_flash_attention", "aten::softmax", "aten::_softmax",
                   "aten::masked_fill", "aten::bmm", "aten::baddbmm", "aten::einsum", "flex_attention")),
    ("linear layers", ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul", "aten::_addmm", "mkldnn")),
    ("norms", ("aten::native_layer_norm", "aten::layer_norm", "aten::native_layer_norm_backward")),
    ("front-end (STFT)", ("aten::_fft", "aten::stft", "aten::reflection_pad", "aten::abs", "aten::pow", "aten::view_as_real")),
    ("memory copies", ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::to",
                       "aten::index", "aten::fill_", "aten::zero_", "aten::zeros", "aten::empty", "aten::constant_pad_nd")),
    ("elementwise (GELU, mul, add)", ("aten::gelu", "aten::mul", "aten::add", "aten::sum", "aten::gelu_backward",
                                      "aten::div", "aten::sub", "aten::neg", "aten::square", "aten::mean")),
)


def categorize(name: str) -> str:
    """Category of one profiler op name (see :data:`PROFILE_CATEGORIES`)."""
    for cat, prefixes in PROFILE_CATEGORIES:
        if name.startswith(prefixes):
            return cat
    if name.startswith("Torch-Compiled") or name.startswith("graph_") or "inductor" in name.lower() or name.startswith("cpp_fused"):
        return "compiled kernels"
    return "other"


def child_profile(task: dict[str, Any]) -> dict[str, Any]:
    """Self-CPU-time breakdown of one model's step under ``torch.profiler`` (after a warm-up)."""
    import warnings

    import torch
    from torch.profiler import ProfilerActivity, profile

    warnings.filterwarnings("ignore", message="audio features")
    models, audio, video = _build(task["n"], (task["model"],))
    step = _step_fn(models[task["model"]], audio, video, task["precision"], task["mode"])
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step()
        wall = time.perf_counter() - t0
    cats: dict[str, float] = {}
    ops: dict[str, float] = {}
    for evt in prof.key_averages():
        self_us = evt.self_cpu_time_total
        if self_us <= 0:
            continue
        cats[categorize(evt.key)] = cats.get(categorize(evt.key), 0.0) + self_us / 1e6
        ops[evt.key] = self_us / 1e6
    top = dict(sorted(ops.items(), key=lambda kv: -kv[1])[:15])
    return {"wall_s": wall, "categories_s": dict(sorted(cats.items(), key=lambda kv: -kv[1])), "top_ops_s": top}


def child_main(task: dict[str, Any]) -> None:
    """Run one task in this (fresh) process and print its JSON result as the last line."""
    cap = task.get("mem_cap_bytes")
    if cap:
        resource.setrlimit(resource.RLIMIT_AS, (int(cap), int(cap)))
    kind = task["kind"]
    fn = {"time": child_time, "memory": child_memory, "peak": child_peak, "demo": child_demo, "profile": child_profile}[kind]
    out = fn(task)
    print("@@RESULT@@" + json.dumps(out))


# ============================================================================ parent side


#: Environment of the memory children: glibc serves every allocation >= 64 KiB with its own
#: mmap and unmaps it on free, so RSS follows the live tensors instead of heap fragmentation
#: (the default dynamic threshold keeps freed tensors of up to 32 MiB in the heap). Same for
#: both models; timing children run with the default allocator settings.
MEMORY_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def run_child(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``task`` in a fresh interpreter; returns its result or ``{"status": "error", ...}``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(task)]
    env = dict(os.environ, **(MEMORY_CHILD_ENV if task["kind"] == "memory" else {}))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": f"no result within {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT@@"):
            out = json.loads(line[len("@@RESULT@@"):])
            out.setdefault("status", "ok")
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    killed = proc.returncode < 0 or proc.returncode == 137
    return {"status": "oom" if killed else "error", "returncode": proc.returncode, "error": " | ".join(tail)[-400:]}


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
