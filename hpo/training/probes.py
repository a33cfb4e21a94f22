"""Short probes of a training setup, before a search spends compute on it.

The measurements behind `hpo check` and `hpo lr-find`: the loss before any update, whether a
tiny subset can be learned by heart, how the loss moves in a short run at a given learning
rate, and the learning-rate range test. Each returns numbers; judging them is `hpo.wisdom`'s.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from hpo.training.data import Dataset
from hpo.training.divergence import SMOOTHING, MovingAverage, training_monitor
from hpo.training.loop import (
    FlatOptimizer,
    TrainConfig,
    build,
    default_threads,
    pick_device,
    train_step,
)

# The loss before any update is measured on at most this many training examples.
INITIAL_LOSS_EXAMPLES = 4096


def _tensors(x: np.ndarray, y: np.ndarray, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)


def _batches(n: int, batch: int, seed: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Index batches of `batch` examples without end: each pass a fresh seeded permutation,
    its trailing partial batch dropped."""
    shuffle = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n - batch + 1, batch):
            yield order[start:start + batch].to(device)


def _setup(config: TrainConfig) -> torch.device:
    torch.set_num_threads(config.threads or default_threads())
    torch.manual_seed(config.seed)
    return pick_device(config.device)


def unregularized(config: TrainConfig) -> TrainConfig:
    """The config with dropout and weight decay off: what the babysitting checks train."""
    return replace(config, dropout=0.0, weight_decay=0.0)


def label_entropy(y: np.ndarray) -> float:
    """The cross-entropy of predicting the class frequencies: ln C when classes are balanced."""
    frequencies = np.bincount(y) / len(y)
    frequencies = frequencies[frequencies > 0]
    return float(-(frequencies * np.log(frequencies)).sum())


@torch.no_grad()
def loss_on(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """The mean cross-entropy of `model` on (x, y)."""
    device = next(model.parameters()).device
    x_t, y_t = _tensors(x, y, device)
    return F.cross_entropy(model(x_t), y_t).item()


@torch.no_grad()
def initial_loss(config: TrainConfig, data: Dataset) -> float:
    """The mean cross-entropy of the freshly initialized model, regularization off.

    Measured in training mode (batch norm uses the batch's statistics, as in the first step).
    """
    device = _setup(config)
    model, _ = build(unregularized(config), data, device)
    x, y = _tensors(data.x_train[:INITIAL_LOSS_EXAMPLES], data.y_train[:INITIAL_LOSS_EXAMPLES],
                    device)
    return F.cross_entropy(model(x), y).item()


def tiny_subset(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of about `size` examples, stratified: at least one of every class."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = max(1, size // len(classes))
    picked = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


@dataclass
class ShortRun:
    losses: list[float]  # per step, as trained
    accuracy: float  # on the examples it trained on, after the last step
    diverged: str | None  # the divergence rule's reason, if it stopped the run
    model: torch.nn.Module  # as trained, in evaluation mode


def short_run(config: TrainConfig, x_np: np.ndarray, y_np: np.ndarray, data: Dataset,
              steps: int, divergence_factor: float | None = None) -> ShortRun:
    """Train a fresh model for `steps` mini-batches of `config.batch_size` on (x, y).

    With a divergence factor the trainer's rule (smoothed, after its warm-up) stops it early.
    """
    device = _setup(config)
    model, optimizer = build(config, data, device)
    x, y = _tensors(x_np, y_np, device)
    batch = min(config.batch_size, len(x))
    if config.batch_norm and batch == 1:
        batch = min(2, len(x))
    monitor = training_monitor(divergence_factor) if divergence_factor else None
    losses: list[float] = []
    diverged = None
    batches = _batches(len(x), batch, config.seed, device)
    for step in range(steps):
        index = next(batches)
        losses.append(train_step(model, optimizer, x[index], y[index]).item())
        if monitor is not None:
            diverged = monitor.check(losses[-1], step)
            if diverged:
                break
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return ShortRun(losses, accuracy, diverged, model)


@dataclass
class LrCurve:
    """One learning-rate range test: the loss at each step's learning rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]  # bias-corrected moving average of the losses
    diverged_at: float | None  # the lr at which the smoothed loss passed factor x its best


def lr_range_test(model: torch.nn.Module, optimizer: FlatOptimizer, x: torch.Tensor,
                  y: torch.Tensor, start: float, end: float, steps: int, batch_size: int,
                  factor: float, seed: int = 0, smoothing: float = SMOOTHING) -> LrCurve:
    """Raise the learning rate exponentially from `start` to `end` over `steps` mini-batches.

    The loss is smoothed by a bias-corrected moving average (`smoothing` is its beta); the
    test stops once the smoothed loss exceeds `factor` times the best smoothed loss so far, or
    a loss is not finite. The model's and the optimizer's state are restored afterwards, so a
    caller can go on training from where it was.
    """
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = optimizer.state_dict()
    ratio = (end / start) ** (1 / max(steps - 1, 1))
    batches = _batches(len(x), min(batch_size, len(x)), seed, x.device)
    average = MovingAverage(smoothing)
    lrs, losses, smoothed = [], [], []
    best, diverged_at = math.inf, None
    model.train()
    for step in range(steps):
        lr = start * ratio ** step
        optimizer.set_lr(lr)
        index = next(batches)
        value = train_step(model, optimizer, x[index], y[index]).item()
        if not math.isfinite(value):
            diverged_at = lr
            break
        current = average.add(value)
        lrs.append(lr)
        losses.append(value)
        smoothed.append(current)
        best = min(best, current)
        if step > 0 and current > factor * best:
            diverged_at = lr
            break
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    return LrCurve(lrs, losses, smoothed, diverged_at)


def lr_curve(config: TrainConfig, data: Dataset, start: float, end: float, steps: int,
             factor: float, smoothing: float = SMOOTHING) -> LrCurve:
    """The range test on a fresh model built from `config` (its seed picks init and batches)."""
    device = _setup(config)
    model, optimizer = build(config, data, device)
    x, y = _tensors(data.x_train, data.y_train, device)
    return lr_range_test(model, optimizer, x, y, start, end, steps, config.batch_size, factor,
                         seed=config.seed, smoothing=smoothing)



@dataclass
class ReferencePoint:
    lr: float
    loss: float  # the mean training loss of the run's last steps; inf when it diverged
    diverged: str | None  # the divergence rule's reason, if it stopped the run


@dataclass
class ReferenceSweep:
    """Ground truth for a range test: runs at one constant lr each, every other thing equal."""

    points: list[ReferencePoint]

    @property
    def best(self) -> float:
        """The lr whose run ended at the lowest training loss."""
        return min(self.points, key=lambda p: p.loss).lr

    @property
    def diverged_at(self) -> float | None:
        """The smallest lr whose run the divergence rule stopped."""
        return next((p.lr for p in self.points if p.diverged), None)


def log_grid(start: float, end: float, per_decade: int) -> list[float]:
    """Learning rates from `start` to `end` (both included), evenly spaced on a log axis."""
    count = max(1, round(math.log10(end / start) * per_decade))
    return [start * (end / start) ** (i / count) for i in range(count + 1)]


def reference_sweep(config: TrainConfig, data: Dataset, lrs: list[float], steps: int,
                    factor: float, tail: int = 10) -> ReferenceSweep:
    """Each lr trained alone at that constant rate from the same fresh model and batches.

    What a range test tries to read off one ramp, measured the slow way: `config` (its seed
    picks the initialization and the batch order, as in `lr_curve`) trains `steps` mini-batches
    at each lr, held to the divergence rule with `factor`, and is scored by the mean loss of
    its last `tail` steps (one mini-batch's loss is too noisy to rank neighbouring rates).
    """
    points = []
    for lr in lrs:
        run = short_run(replace(config, lr=lr), data.x_train, data.y_train, data, steps, factor)
        loss = math.inf if run.diverged else float(np.mean(run.losses[-tail:]))
        points.append(ReferencePoint(lr, loss, run.diverged))
    return ReferenceSweep(points)
