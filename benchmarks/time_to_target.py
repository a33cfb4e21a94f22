"""Time to a good model: `hpo run` against plain Optuna driving the tutorial loop.

For each dataset and sampler seed, two whole processes search the quickstart's space (lr,
dropout, batch size, initializer, optimizer; a 128x128 MLP with batch norm, 20 epochs):
- hpo: `hpo run study.yaml -q` as a user starts it: its defaults (local workers where they
  pay, its training loop, the median pruner and the 3x divergence rule), TPE with the seed;
- plain Optuna: one process as in Optuna's PyTorch example: `TPESampler(seed)`,
  `MedianPruner`, the tutorial `DataLoader` loop with torch's default threads, and the same
  model, initializers and optimizers (hpo's own, imported, so the space means the same).
Both read the same NPZ file, split 80/20 stratified, standardized, and both score a trial by its
best epoch's validation accuracy. Time to target: from process start to the end of the first
trial that reaches the target accuracy; the benchmark watches the study and stops the
process then. Medians over seeds; a run that misses the target within the trial budget counts
as its whole time, marked with '>'.

    python benchmarks/time_to_target.py [--seeds 0 1 2] [--trials 50] [--only digits]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

# (dataset, target validation accuracy, data spec for hpo's generator)
DATASETS = {
    "digits": (0.985, {"dataset": "digits"}),
    # Harder: 10 classes, 40 features of which 20 informative, 6000 rows.
    "synthetic": (0.92, {"dataset": "synthetic", "n_samples": 6000, "n_features": 40,
                         "n_classes": 10, "seed": 0}),
}

STUDY = """
name: ttt
direction: maximize
metric: val_accuracy
n_trials: {trials}
sampler: {{type: tpe, seed: {seed}, n_startup_trials: 8}}
objective:
  trainer: mlp
  data: {{path: data.npz, normalize: standard, val_fraction: 0.2, seed: 0}}
  model: {{hidden: [128, 128], activation: relu, batch_norm: true}}
  train: {{epochs: 20, seed: 0}}
search_space:
  lr:          {{type: float, low: 1.0e-5, high: 1.0, log: true}}
  dropout:     {{type: float, low: 0.0, high: 0.5}}
  batch_size:  {{type: categorical, choices: [32, 64, 128, 256]}}
  initializer: {{type: categorical, choices: [normal, small_normal, xavier_uniform, he_normal,
                                             lecun_normal]}}
  optimizer:   {{type: categorical, choices: [sgd, momentum, nesterov, adagrad, rmsprop,
                                             adadelta, adam, nadam, radam]}}
"""

PLAIN = """
import numpy as np
import optuna
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, TensorDataset

from hpo.training.init import initialize
from hpo.training.model import MLP
from hpo.training.optim import make_optimizer

optuna.logging.set_verbosity(optuna.logging.ERROR)
arrays = np.load("data.npz")
x_train, x_val, y_train, y_val = train_test_split(arrays["X"], arrays["y"], test_size=0.2,
                                                  stratify=arrays["y"], random_state=0)
scaler = StandardScaler().fit(x_train)
train_set = TensorDataset(torch.tensor(scaler.transform(x_train), dtype=torch.float32),
                          torch.tensor(y_train))
val_set = TensorDataset(torch.tensor(scaler.transform(x_val), dtype=torch.float32),
                        torch.tensor(y_val))
n_features, n_classes = x_train.shape[1], int(arrays["y"].max()) + 1


def objective(trial):
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5)
    batch_size = trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    initializer = trial.suggest_categorical(
        "initializer", ["normal", "small_normal", "xavier_uniform", "he_normal", "lecun_normal"])
    name = trial.suggest_categorical(
        "optimizer", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam",
                      "nadam", "radam"])
    torch.manual_seed(0)
    model = MLP(n_features, [128, 128], n_classes, "relu", True, dropout)
    initialize(model, initializer)
    optimizer = make_optimizer(name, model.parameters(), lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.95)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    best = 0.0
    for epoch in range(20):
        model.train()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(val_set, batch_size=1024):
                correct += (model(x).argmax(1) == y).sum().item()
        accuracy = correct / len(val_set)
        best = max(best, accuracy)
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return best


study = optuna.create_study(study_name="ttt", storage="sqlite:///ttt.db", direction="maximize",
                            sampler=optuna.samplers.TPESampler(seed=SEED, n_startup_trials=8),
                            pruner=optuna.pruners.MedianPruner(n_startup_trials=5,
                                                               n_warmup_steps=3))
# A diverged trial's NaN loss gives a failed trial; the search goes on, as a user's would.
study.optimize(objective, n_trials=TRIALS, catch=(ValueError, RuntimeError))
"""


def write_data(folder: Path, spec: dict) -> None:
    from hpo.training.data import DataConfig, _builtin

    x, y = _builtin(DataConfig(**spec))
    np.savez(folder / "data.npz", X=x, y=y)


def first_hit(folder: Path, target: float) -> tuple[float | None, int]:
    """(end time of the first COMPLETE trial at or above `target`, or None; finished trials)."""
    try:
        study = optuna.load_study(study_name="ttt", storage=f"sqlite:///{folder}/ttt.db")
    except KeyError:
        return None, 0
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    hits = [t.datetime_complete.timestamp() for t in done
            if t.state == TrialState.COMPLETE and t.value >= target]
    return (min(hits) if hits else None), len(done)


def time_to_target(command: list[str], folder: Path, target: float) -> tuple[float, bool, int]:
    """(seconds from process start to the first hit or to exit, hit?, trials finished)."""
    for database in folder.glob("*.db"):
        database.unlink()
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    started = time.time()
    process = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    hit = None
    while process.poll() is None:
        time.sleep(0.5)
        hit, _ = first_hit(folder, target)
        if hit is not None:
            process.send_signal(signal.SIGINT)
            break
    _, err = process.communicate(timeout=120)
    if hit is None and process.returncode != 0:
        sys.exit(f"{command} failed: {err[-2000:]}")
    hit, finished = first_hit(folder, target)
    ended = time.time()
    return (hit - started if hit else ended - started), hit is not None, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=50, help="each search's trial budget")
    parser.add_argument("--only", choices=sorted(DATASETS), help="one dataset")
    args = parser.parse_args()
    names = [args.only] if args.only else list(DATASETS)
    print(f"trial budget {args.trials}; seeds {args.seeds}; time from process start")
    for name in names:
        target, spec = DATASETS[name]
        times: dict[str, list[float]] = {"hpo": [], "optuna": []}
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_data(folder, spec)
            for seed in args.seeds:
                (folder / "study.yaml").write_text(STUDY.format(trials=args.trials, seed=seed))
                (folder / "plain.py").write_text(
                    f"SEED = {seed}\nTRIALS = {args.trials}\n" + PLAIN)
                row = []
                for kind, command in (
                        ("hpo", [sys.executable, "-m", "hpo", "run", "study.yaml", "-q"]),
                        ("optuna", [sys.executable, "plain.py"])):
                    seconds, hit, finished = time_to_target(command, folder, target)
                    times[kind].append(seconds)
                    row.append(f"{kind} {'' if hit else '>'}{seconds:5.1f} s "
                               f"({finished} trials)")
                print(f"{name} >= {target} seed {seed}: " + "  ".join(row), flush=True)
        hpo_s, optuna_s = statistics.median(times["hpo"]), statistics.median(times["optuna"])
        print(f"{name}: median time to {target}: hpo {hpo_s:.1f} s, plain Optuna "
              f"{optuna_s:.1f} s; ratio {hpo_s / optuna_s:.2f}x (goal <= 0.50)", flush=True)


if __name__ == "__main__":
    main()
