"""The training loop: tensors on the device, index-sliced batches, divergence checked per step."""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from hpo.divergence import DivergenceMonitor, training_monitor
from hpo.training import LOCAL_WORKERS_ENV
from hpo.training.data import Dataset
from hpo.training.init import initialize
from hpo.training.model import MLP
from hpo.training.optim import make_optimizer

# On a GPU, reading the loss syncs the device: the per-step losses are kept on it and read
# together every few steps, then fed to the divergence rule one by one, as on the CPU.
CUDA_CHECK_EVERY = 16
EVAL_BATCH = 8192


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one training run, resolved from the spec and a trial."""

    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    initializer: str = "he_normal"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float | None = None
    weight_decay: float = 0.0
    lr_decay: float | None = None
    lr_schedule: str = "exponential"
    lr_step_epochs: int = 10
    grad_clip: float | None = None
    early_stop_patience: int | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    metric: str = "val_accuracy"
    divergence_factor: float | None = 3.0


class Reporter(Protocol):
    """What the loop tells the outside world after each epoch, and asks of it."""

    def report(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    best_value: float | None
    epochs_run: int
    stop_reason: str | None  # why training stopped before its last epoch, if it did
    diverged: bool
    initial_loss: float  # the loss of the first batch, before the first update
    expected_initial_loss: float  # ln(C): softmax cross-entropy of an untrained model
    n_params: int
    device: str
    threads: int  # torch's intra-op threads on the CPU
    train_seconds: float


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.cache
def usable_cpus() -> int:
    """The CPUs this process may really use: its affinity and its container's CPU quota
    (cgroup v1 and v2), not the host's count that `os.cpu_count()` gives."""
    # joblib is scikit-learn's (imported already for the data); it reads cgroups and affinity.
    from joblib.externals.loky import cpu_count

    return cpu_count()


def default_threads() -> int:
    """The usable CPUs divided among the local workers, at least one each."""
    workers = max(1, int(os.environ.get(LOCAL_WORKERS_ENV, "1")))
    return max(1, usable_cpus() // workers)


def warm_up() -> None:
    """Pay torch's one-time costs now, so the first trial's times compare with the others'.

    A process's first optimizer imports torch._dynamo: 1.5 s on a small CPU, which would
    otherwise land in trial 0's duration (and in every local worker's first trial).
    """
    make_optimizer("sgd", [torch.zeros(1, requires_grad=True)], lr=0.1)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    sched = torch.optim.lr_scheduler
    if config.lr_schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "step":
        return sched.StepLR(optimizer, config.lr_step_epochs, gamma=config.lr_decay or 0.1)
    if config.lr_decay is not None:
        return sched.ExponentialLR(optimizer, gamma=config.lr_decay)
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start:start + EVAL_BATCH])
        target = y[start:start + EVAL_BATCH]
        loss_sum += F.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train()
    return (loss_sum / len(x)).item(), (correct.float() / len(x)).item()


def _check_losses(monitor: DivergenceMonitor, losses: torch.Tensor, first_step: int) -> str | None:
    """Feed the losses of consecutive steps from `first_step` on to the rule, in order."""
    for offset, loss in enumerate(losses.tolist()):
        reason = monitor.check(loss, first_step + offset)
        if reason:
            return reason
    return None


def _better(metric: str, value: float, best: float | None) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if metric == "val_accuracy" else value < best


def build(config: TrainConfig, data: Dataset, device: torch.device
          ) -> tuple[MLP, torch.optim.Optimizer]:
    """The initialized model on `device` and its optimizer, as `config` describes them."""
    model = MLP(data.n_features, config.hidden, data.n_classes, config.activation,
                config.batch_norm, config.dropout)
    initialize(model, config.initializer)
    model.to(device)
    optimizer = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum,
                               config.weight_decay)
    return model, optimizer


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, grad_clip: float | None = None) -> torch.Tensor:
    """One update on the batch (x, y), the gradient norm clipped to `grad_clip` if set;
    returns the batch's loss, detached (reading it is the caller's choice: it syncs a GPU)."""
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach()


def train(config: TrainConfig, data: Dataset, reporter: Reporter | None = None) -> TrainResult:
    """Train an MLP on `data`; the objective value is the best epoch's `config.metric`."""
    started = time.perf_counter()
    device = pick_device(config.device)
    torch.set_num_threads(config.threads or default_threads())
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)

    model, optimizer = build(config, data, device)
    scheduler = _scheduler(config, optimizer)

    x_train = torch.from_numpy(data.x_train).to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    x_val = torch.from_numpy(data.x_val).to(device)
    y_val = torch.from_numpy(data.y_val).to(device)
    n = len(x_train)
    # Batch norm cannot train on a batch of one: drop such a trailing batch.
    last_start = n - 1 if config.batch_norm and n % config.batch_size == 1 else n

    monitor = training_monitor(config.divergence_factor) if config.divergence_factor else None
    check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY
    pending, held = torch.empty(check_every, device=device), 0  # losses not yet checked
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    best_value: float | None = None
    best_val_loss, epochs_since_better = math.inf, 0
    initial_loss = math.nan
    stop_reason: str | None = None
    diverged = False
    step = 0

    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for start in range(0, last_start, config.batch_size):
            index = order[start:start + config.batch_size]
            detached = train_step(model, optimizer, x_train[index], y_train[index],
                                  config.grad_clip)
            loss_sum += detached * len(index)
            seen += len(index)
            if step == 0:
                initial_loss = detached.item()
            if monitor is not None:
                pending[held] = detached
                held += 1
                if held == check_every or start + config.batch_size >= last_start:
                    stop_reason = _check_losses(monitor, pending[:held], step - held + 1)
                    held = 0
            step += 1
            if stop_reason:
                diverged = True
                break
        train_loss = (loss_sum / max(seen, 1)).item()
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        for name, value in metrics.items():
            history[name].append(value)
        if _better(config.metric, metrics[config.metric], best_value):
            best_value = metrics[config.metric]
        if diverged:
            break
        if reporter is not None:
            reporter.report(epoch, metrics)
            if reporter.should_stop():
                stop_reason = f"stopped by the reporter after epoch {epoch}"
                break
        if scheduler is not None:
            scheduler.step()
        if val_loss < best_val_loss:
            best_val_loss, epochs_since_better = val_loss, 0
        else:
            epochs_since_better += 1
        if config.early_stop_patience and epochs_since_better >= config.early_stop_patience:
            stop_reason = (f"early stop: val_loss did not improve for "
                           f"{config.early_stop_patience} epochs")
            break

    return TrainResult(
        history=history,
        best_value=best_value,
        epochs_run=len(history["train_loss"]),
        stop_reason=stop_reason,
        diverged=diverged,
        initial_loss=initial_loss,
        expected_initial_loss=math.log(data.n_classes),
        n_params=sum(p.numel() for p in model.parameters()),
        device=str(device),
        threads=torch.get_num_threads(),
        train_seconds=time.perf_counter() - started,
    )
