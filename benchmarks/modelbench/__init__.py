"""Modules of the model benchmark (``benchmarks/bench_model.py`` is its command line):

- :mod:`.workload`: the sizes, the model, the demo configuration, token layouts, FLOPs;
- :mod:`.childproc`: how a benchmark runs a task in a fresh interpreter and reads its result, and the
  measurements every child makes the same way (RSS, its reset, best-of-N timing);
- :mod:`.children`: one measurement per fresh interpreter (time, memory, matmul peak, demo, profile);
- :mod:`.fastpath`: the per-machine fast-path table of ``bench_fastpath.py`` (bf16 capability, floors, report);
- :mod:`.report`: machine facts, the table, the goals and the plot.
"""
