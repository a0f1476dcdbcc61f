"""The child side of the model benchmark: each measurement runs in a fresh interpreter
(``bench_model.py --child TASK``) so timings, peak memory and imports of one never touch
another. :func:`child_main` runs one task and prints its JSON result as the last line."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

from .childproc import best_seconds, emit_result, reset_peak_rss, rss_kib
from .workload import BATCH, DEMO_INPUT_KEYS, MODEL_KW, SIZES, VIDEO_HW, layout_for


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
    reset = reset_peak_rss()
    base, base_file = rss_kib("VmRSS"), rss_kib("RssFile")
    try:
        models, audio, video = _build(task["n"], (task["model"],))
        step = _step_fn(models[task["model"]], audio, video, task["precision"], task["mode"])
        t0 = time.perf_counter()
        step()
        elapsed = time.perf_counter() - t0
    except (RuntimeError, MemoryError) as err:
        if "alloc" in str(err).lower() or isinstance(err, MemoryError):
            return {"status": "oom", "error": str(err).splitlines()[0][:200], "peak_mib": (rss_kib("VmHWM") - base) / 1024}
        raise
    return {"status": "ok", "peak_mib": (rss_kib("VmHWM") - base) / 1024, "step_s": elapsed,
            "file_mib": (rss_kib("RssFile") - base_file) / 1024, "warmed_up_at": warm, "peak_reset": reset}


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
        out[name] = 2.0 * size**3 / best_seconds(lambda: torch.mm(a, b), task.get("repeats", 4)) / 1e12
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
    result["layout"] = dict(n_a=feats.layout.count("audio"), n_f=feats.layout.count("fusion"), n_v=feats.layout.count("video"))
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
    emit_result(fn(task))
