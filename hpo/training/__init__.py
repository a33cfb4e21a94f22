"""The PyTorch side: data, model, initialization, optimizers, the training loop, and packed
training (several runs as one stacked model).

Nothing here imports Optuna: the loop takes a config and a small reporter, so it runs and is
tested on its own; `hpo.worker.objective` adapts an Optuna trial to it. `config` holds the
contracts, free of torch: the names, the config dataclasses and why a run stopped.
"""

# How many local workers share this machine's cores (set by `hpo run --workers`); kept here,
# free of torch, so the worker launcher can set it without importing torch.
LOCAL_WORKERS_ENV = "HPO_LOCAL_WORKERS"
