"""The model's speed at two revisions of this repository, side by side in one run.

Each revision's ``src`` runs in its own long-lived child process (a git worktree made for a
revision other than the working tree), with the same model, weights and inputs. The parent
alternates the two children step by step -- A, B, B, A, A, B, ... -- so drift in the load of
the machine hits both alike, and reports the median time of each and their ratio. Use it to
check that a change keeps (or improves) speed: ``base`` is the reference.

Usage::

    python benchmarks/bench_revisions.py --base HEAD~1                  # working tree vs HEAD~1
    python benchmarks/bench_revisions.py --base main --head HEAD --n 2248 --modes forward train
    python benchmarks/bench_revisions.py --base HEAD~1 --precision bf16   # only where bf16 is native

The workload is the model benchmark's audio-video configuration (``dim=512, depth=4``, batch
2, 224x224 video, seed spectrogram front-end), sized by ``--n`` tokens (608, 1200, 2248,
4484, 7968). ``train`` is forward + ``mean(out**2)`` + backward.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[1])
import torch
from zorro import Zorro
cfg = json.loads(sys.argv[2])
torch.manual_seed(0)
model = Zorro(dim=512, depth=4, heads=8, dim_head=64, num_fusion_tokens=16, audio_frontend="spectrogram")
g = torch.Generator().manual_seed(1)
audio = torch.randn(2, cfg["samples"], generator=g)
video = torch.randn(2, 3, cfg["frames"], 224, 224, generator=g)
bf16 = cfg["precision"] == "bf16"

def step(mode):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        if mode == "forward":
            model.eval()
            with torch.no_grad():
                model(audio=audio, video=video)
            return
        model.train()
        out = model(audio=audio, video=video)
    (out.float() ** 2).mean().backward()
    model.zero_grad(set_to_none=True)

print("ready", flush=True)
for line in sys.stdin:
    mode = line.strip()
    if not mode:
        break
    t0 = time.perf_counter()
    step(mode)
    print(json.dumps({"s": time.perf_counter() - t0}), flush=True)
"""

#: tokens -> (audio samples, video frames) of the model benchmark's sizes
SIZES = {608: (16000, 4), 1200: (32000, 8), 2248: (32000, 16), 4484: (64000, 32), 7968: (160000, 48)}


def _worktree(rev: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="zorro-rev-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    return path


def _start(src: Path, cfg: dict) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(src), json.dumps(cfg)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the child for {src} did not start")
    return child


def _time(child: subprocess.Popen, mode: str) -> float:
    child.stdin.write(mode + "\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline())["s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the reference revision (git rev)")
    parser.add_argument("--head", default=None, help="the revision to compare (default: the working tree)")
    parser.add_argument("--n", type=int, default=2248, choices=sorted(SIZES), help="tokens of the workload")
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8, help="timed steps of each revision per mode")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    samples, frames = SIZES[args.n]
    cfg = {"samples": samples, "frames": frames, "precision": args.precision}
    made = []
    try:
        base_tree = _worktree(args.base)
        made.append(base_tree)
        if args.head is None:
            head_tree = ROOT
        else:
            head_tree = _worktree(args.head)
            made.append(head_tree)
        children = {"base": _start(base_tree / "src", cfg), "head": _start(head_tree / "src", cfg)}
        results = {}
        for mode in args.modes:
            times = {"base": [], "head": []}
            for _ in range(args.warmup):
                for child in children.values():
                    _time(child, mode)
            for r in range(args.repeats):
                order = ("base", "head") if r % 2 == 0 else ("head", "base")
                for name in order:
                    times[name].append(_time(children[name], mode))
            base, head = statistics.median(times["base"]), statistics.median(times["head"])
            results[mode] = {"base_ms": 1e3 * base, "head_ms": 1e3 * head, "head_over_base": head / base,
                             "base_all_ms": [1e3 * t for t in times["base"]], "head_all_ms": [1e3 * t for t in times["head"]]}
            print(f"{mode:8s} n={args.n} {args.precision}: base ({args.base}) {1e3 * base:8.1f} ms   "
                  f"head ({args.head or 'working tree'}) {1e3 * head:8.1f} ms   head/base {head / base:.3f}", flush=True)
        for child in children.values():
            child.stdin.close()
            child.wait(timeout=60)
        if args.json:
            Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    finally:
        for tree in made:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f} s)")
    sys.exit(rc)
