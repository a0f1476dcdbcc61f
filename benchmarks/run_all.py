"""``make bench``: run every benchmark of the project, one after the other.

* ``bench_model.py`` -- our model against the dense seed-style reference (issue 7).
* ``bench_fastpath.py`` -- eager and compiled, each attention backend, forward and training
  step against the seed, fp32 and (where the CPU has it natively) bf16: the per-machine table.
* ``bench_decode.py`` -- clip decoding throughput (issue 5), when present.
* ``bench_shards.py`` -- reading prepared shards vs decoding on the fly, and training from
  shards vs in-memory tensors (issue 20), when present.
* ``bench_prepare.py`` -- ``zorro prepare`` throughput and bytes per clip (issue 20), when present.
* ``bench_annotations.py`` -- the data path at AudioSet-2M scale: ``zorro prepare audioset
  --dry-run`` over a 2,041,789-row segment list, and the start-up of 200k- and 2M-sample shard
  folders (issue 26), when present.

Arguments after ``--`` go to ``bench_model.py`` (e.g. ``python benchmarks/run_all.py -- --quick``);
``--quick`` alone is passed to it as well. Results land in ``benchmarks/results/``.
Exit status: non-zero if any benchmark failed to run (missed performance goals are reported,
not failures).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        own, model_args = argv[:cut], argv[cut + 1 :]
    else:
        own, model_args = argv, []
    if "--quick" in own and "--quick" not in model_args:
        model_args.append("--quick")
    sys.path.insert(0, str(HERE))
    from modelbench.fastpath import cpu_facts

    try:
        facts = cpu_facts(Path("/proc/cpuinfo").read_text())
    except OSError:
        facts = cpu_facts("")
    print(f"machine: {facts['cpu']}, bf16 {facts['bf16']} (flags: {' '.join(facts['flags']) or 'none of interest'})", flush=True)
    jobs = [("bench_model", [sys.executable, str(HERE / "bench_model.py"), *model_args]),
            ("bench_fastpath", [sys.executable, str(HERE / "bench_fastpath.py"), *(["--repeats", "2"] if "--quick" in model_args else [])])]
    if (HERE / "bench_decode.py").exists():
        jobs.append(("bench_decode", [sys.executable, str(HERE / "bench_decode.py")]))
    if (HERE / "bench_shards.py").exists():
        jobs.append(("bench_shards", [sys.executable, str(HERE / "bench_shards.py"), "--json", str(HERE / "results" / "shards.json")]))
    if (HERE / "bench_prepare.py").exists():
        jobs.append(("bench_prepare", [sys.executable, str(HERE / "bench_prepare.py"), "--json", str(HERE / "results" / "prepare.json")]))
    if (HERE / "bench_annotations.py").exists():
        jobs.append(("bench_annotations", [sys.executable, str(HERE / "bench_annotations.py"), "--json", str(HERE / "results" / "annotations.json")]))
    failed = []
    for name, cmd in jobs:
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd)
        print(f"=== {name} finished in {time.time() - t0:.0f} s (exit {rc})", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
