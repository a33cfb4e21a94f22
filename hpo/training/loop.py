"""The training loop: tensors on the device, index-sliced batches, divergence checked per step."""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from hpo.training.config import METRIC_DIRECTIONS, MetricName, Stop, TrainConfig
from hpo.training.data import Dataset
from hpo.training.divergence import training_monitor
from hpo.training.init import initialize
from hpo.training.model import MLP
from hpo.training.packed_optim import Rows, clip_rows, momentum_of, rule_of

# On a GPU, reading the loss syncs the device: the per-step losses are kept on it and read
# together every few steps, then fed to the divergence rule one by one, as on the CPU.
CUDA_CHECK_EVERY = 16
EVAL_BATCH = 8192


class Reporter(Protocol):
    """What the loop tells the outside world after each epoch, and asks of it."""

    def report(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...


@dataclass
class TrainResult:
    """How one training run went: its metrics by epoch, its best value, and why it stopped."""

    history: dict[str, list[float]]
    best_value: float | None
    epochs_run: int
    stop: Stop  # why training ended: "done" when it ran every epoch
    stop_reason: str | None  # the stop in words, when training stopped before its last epoch
    initial_loss: float  # the loss of the first batch, before the first update
    expected_initial_loss: float  # ln(C): softmax cross-entropy of an untrained model
    n_params: int
    device: str
    threads: int  # torch's intra-op threads on the CPU
    train_seconds: float

    @property
    def diverged(self) -> bool:
        return self.stop == "diverged"


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
    """Torch's intra-op threads for a run whose config does not say (`train.threads`): one,
    on every path (`hpo run`'s workers, `--workers 1`, stages, `hpo.run`, check, lr-find).

    The trainer's MLPs are small: per-operation overhead, not arithmetic, bounds a step, so a
    second thread gains little on idle cores, and on a busy machine each parallel region
    waits for a thread the scheduler has put behind other work: beside a CPU hog, a digits
    trial on 2 threads took 5-40x its one-thread time (`benchmarks/contention.py`). More
    cores serve more one-thread workers, which `hpo run` forks by itself.
    """
    return 1


def warm_up() -> None:
    """Pay torch's one-time costs now (its kernels' first calls), so the first trial's times
    compare with the others', in every local worker forked after this."""
    model = MLP(4, [4], 2, batch_norm=True, dropout=0.5)
    optimizer = FlatOptimizer(model, TrainConfig(hidden=[4], lr=0.1), torch.device("cpu"))
    train_step(model, optimizer, torch.ones(2, 4), torch.zeros(2, dtype=torch.long))


class FlatOptimizer:
    """One run's optimizer: a `hpo.training.packed_optim` rule, as a pack of one applies it.

    The model's parameters are re-laid as views of one buffer (their gradients, of another),
    so the rule updates all of them in a few tensor operations, and a trial trains exactly as
    it would packed. Torch's optimizers stay unused: the first one a process makes imports
    torch._dynamo, a second of every worker's startup.
    """

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: torch.device
                 ) -> None:
        params = list(model.parameters())
        total = sum(p.numel() for p in params)
        self.flat = torch.empty(1, total, device=device)
        self.grad = torch.zeros(1, total, device=device)
        offset = 0
        for p in params:
            where = slice(offset, offset + p.numel())
            self.flat[0, where] = p.detach().reshape(-1)
            p.data = self.flat[0, where].view_as(p)
            p.grad = self.grad[0, where].view_as(p)  # autograd adds into it, in place
            offset += p.numel()

        def column(value: float) -> torch.Tensor:
            return torch.full((1, 1), float(value), device=device)

        self.config = config
        momentum = momentum_of(config.optimizer, config.momentum)
        self.rule, nesterov = rule_of(config.optimizer, momentum)
        self.rows = Rows.of(column(config.lr), column(momentum), column(config.weight_decay),
                            column(0), nesterov)
        self.clip = column(config.grad_clip) if config.grad_clip is not None else None
        self.state: dict[str, torch.Tensor] = {}

    @property
    def lr(self) -> float:
        return self.rows.lr.item()

    def set_lr(self, lr: float) -> None:
        self.rows.lr.fill_(lr)

    def zero_grad(self) -> None:
        self.grad.zero_()  # never None: the parameters' gradients are views of this buffer

    def step(self) -> None:
        if self.clip is not None:
            clip_rows(self.grad, self.clip)
        self.rows.step += 1
        self.rule(self.flat, self.grad, self.rows, self.state)

    def end_epoch(self, epochs_done: int) -> None:
        """Set the learning rate of the next epoch, by the config's schedule."""
        self.set_lr(self.config.lr_after(epochs_done))

    def state_dict(self) -> dict[str, Any]:
        """A copy of what the optimizer holds: its state, step count and learning rate."""
        return {"state": {k: v.clone() for k, v in self.state.items()},
                "step": self.rows.step.clone(), "lr": self.rows.lr.clone()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.state = {k: v.clone() for k, v in saved["state"].items()}
        self.rows.step.copy_(saved["step"])
        self.rows.lr.copy_(saved["lr"])


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


class Progress:
    """One run's bookkeeping, the same whether it trains alone or packed with others: its
    step losses through the divergence rule, its epochs' metrics, and when it stops."""

    def __init__(self, config: TrainConfig, reporter: Reporter | None) -> None:
        self.config = config
        self.reporter = reporter
        factor = config.divergence_factor
        self.monitor = training_monitor(factor) if factor else None
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": [],
                                                "val_accuracy": []}
        self.best_value: float | None = None
        self.best_val_loss, self.epochs_since_better = math.inf, 0
        self.initial_loss = math.nan
        self.stop: Stop = "done"
        self.stop_reason: str | None = None
        self.steps = 0  # steps whose losses were recorded

    def record_losses(self, losses: list[float]) -> bool:
        """Take the losses of this run's next steps, in order; True when the divergence
        rule stops the run."""
        for loss in losses:
            if self.steps == 0:
                self.initial_loss = loss
            reason = self.monitor.check(loss, self.steps) if self.monitor else None
            self.steps += 1
            if reason:
                self.stop, self.stop_reason = "diverged", reason
                return True
        return False

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch's train_loss, val_loss and val_accuracy; True when the run stops
        after it (diverged, stopped by the reporter, or early stopping)."""
        for name, value in metrics.items():
            self.history[name].append(value)
        if _better(self.config.metric, metrics[self.config.metric], self.best_value):
            self.best_value = metrics[self.config.metric]
        if self.stop == "diverged":
            return True
        if self.reporter is not None:
            self.reporter.report(epoch, metrics)
            if self.reporter.should_stop():
                self.stop = "reporter"
                self.stop_reason = f"stopped by the reporter after epoch {epoch}"
                return True
        if metrics["val_loss"] < self.best_val_loss:
            self.best_val_loss, self.epochs_since_better = metrics["val_loss"], 0
        else:
            self.epochs_since_better += 1
        patience = self.config.early_stop_patience
        if patience and self.epochs_since_better >= patience:
            self.stop = "early"
            self.stop_reason = f"early stop: val_loss did not improve for {patience} epochs"
            return True
        return False

    def result(self, n_classes: int, n_params: int, device: torch.device,
               started: float) -> TrainResult:
        return TrainResult(
            history=self.history,
            best_value=self.best_value,
            epochs_run=len(self.history["train_loss"]),
            stop=self.stop,
            stop_reason=self.stop_reason,
            initial_loss=self.initial_loss,
            expected_initial_loss=math.log(n_classes),
            n_params=n_params,
            device=str(device),
            threads=torch.get_num_threads(),
            train_seconds=time.perf_counter() - started,
        )


def _better(metric: MetricName, value: float, best: float | None) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if METRIC_DIRECTIONS[metric] == "maximize" else value < best


def on_device(data: Dataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The splits as tensors on `device`: x_train, y_train, x_val, y_val."""
    return tuple(torch.from_numpy(a).to(device)
                 for a in (data.x_train, data.y_train, data.x_val, data.y_val))


def build_model(config: TrainConfig, data: Dataset, device: torch.device) -> MLP:
    """The initialized model on `device`, as `config` describes it."""
    model = MLP(data.n_features, config.hidden, data.n_classes, config.activation,
                config.batch_norm, config.dropout)
    initialize(model, config.initializer)
    return model.to(device)


def build(config: TrainConfig, data: Dataset, device: torch.device
          ) -> tuple[MLP, FlatOptimizer]:
    """The initialized model on `device` and its optimizer, as `config` describes them."""
    model = build_model(config, data, device)
    return model, FlatOptimizer(model, config, device)


def train_step(model: torch.nn.Module, optimizer: FlatOptimizer, x: torch.Tensor,
               y: torch.Tensor) -> torch.Tensor:
    """One update on the batch (x, y), its gradient clipped as the optimizer's config says;
    returns the batch's loss, detached (reading it is the caller's choice: it syncs a GPU)."""
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def batches_end(n: int, batch_size: int, batch_norm: bool) -> int:
    """Where an epoch's batches end: batch norm cannot train on a batch of one, so such a
    trailing batch is dropped."""
    return n - 1 if batch_norm and n % batch_size == 1 else n


def train(config: TrainConfig, data: Dataset, reporter: Reporter | None = None) -> TrainResult:
    """Train an MLP on `data`; the objective value is the best epoch's `config.metric`."""
    started = time.perf_counter()
    device = pick_device(config.device)
    torch.set_num_threads(config.threads or default_threads())
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)

    model, optimizer = build(config, data, device)

    x_train, y_train, x_val, y_val = on_device(data, device)
    n = len(x_train)
    last_start = batches_end(n, config.batch_size, config.batch_norm)

    progress = Progress(config, reporter)
    check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY
    pending, held = torch.empty(check_every, device=device), 0  # losses not yet checked

    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=shuffle).to(device)
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for start in range(0, last_start, config.batch_size):
            index = order[start:start + config.batch_size]
            detached = train_step(model, optimizer, x_train[index], y_train[index])
            loss_sum += detached * len(index)
            seen += len(index)
            if progress.monitor is None and progress.steps > 0:
                progress.steps += 1  # without the rule only the first loss is read
                continue
            pending[held] = detached
            held += 1
            if (held == check_every or start + config.batch_size >= last_start
                    or progress.monitor is None):
                diverged = progress.record_losses(pending[:held].tolist())
                held = 0
                if diverged:
                    break
        train_loss = (loss_sum / max(seen, 1)).item()
        val_loss, val_accuracy = evaluate(model, x_val, y_val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_accuracy}
        if progress.end_epoch(epoch, metrics):
            break
        optimizer.end_epoch(epoch + 1)

    return progress.result(data.n_classes, sum(p.numel() for p in model.parameters()), device,
                           started)
