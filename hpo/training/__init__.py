"""The PyTorch side: data, model, initialization, optimizers, the training loop, and packed
training (several runs as one stacked model).

Nothing here imports Optuna: the loop takes a config and a small reporter, so it runs and is
tested on its own; `hpo.worker.objective` adapts an Optuna trial to it. `config` holds the
contracts, free of torch: the names, the config dataclasses and why a run stopped.
"""

import os

# OpenMP threads that spin while they wait hold the cores a descheduled sibling needs: beside
# a CPU hog, a digits trial with `train.threads: 2` took 5-40x its one-thread time; waiting
# passively, 1.1-1.2x (`benchmarks/contention.py`). libgomp reads the policy once, as torch
# loads it: hence here, before any hpo module imports torch. A value the user set wins, and
# a process that imported torch first keeps libgomp's default (the trainer's default of one
# thread, `loop.default_threads`, never waits, so it holds up either way).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# How many local workers share this machine's cores (set by `hpo run --workers`); kept here,
# free of torch, so the worker launcher can set it without importing torch.
LOCAL_WORKERS_ENV = "HPO_LOCAL_WORKERS"
