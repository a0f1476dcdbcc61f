"""Modules of the model benchmark (``benchmarks/bench_model.py`` is its command line):

- :mod:`.workload`: the sizes, the model, the demo configuration, token layouts, FLOPs;
- :mod:`.children`: one measurement per fresh interpreter (time, memory, matmul peak, demo, profile);
- :mod:`.report`: machine facts, the table, the goals and the plot.
"""
