"""The PyTorch side: data, model, initialization, optimizers and the training loop.

Nothing here imports Optuna: the loop takes a config and a small reporter, so it runs and is
tested on its own; `hpo.objective` adapts an Optuna trial to it.
"""
