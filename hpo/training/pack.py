"""Packed training: runs of one model shape and batch size train together as one model.

A small network's training step is mostly per-operation overhead, so K runs stepped as one
stacked model (batched matmuls over [K, batch, width]) cost far less than K steps. Each run
keeps everything a run alone has: its own initial weights (made exactly as `loop.train` makes
them), its own shuffled batches, learning rate and schedule, momentum, weight decay, optimizer,
dropout and gradient clipping, its own divergence check, reports and early stop (`Progress`).

A `Pack` holds up to `size` runs in groups. A group's runs share (hidden, activation, batch
norm, batch size) and the point they are at in an epoch, so every row of its stacked tensors
takes the same batch length. Runs leave a group at an epoch's end (done, pruned, stopped
early) or when they diverge; a new run joins a group at an epoch's end, or starts its own.

The parameters of a group live in one [rows, P] buffer, each layer a view of it, so that the
optimizers of `hpo.training.packed_optim` update every member in a few tensor operations.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F

from hpo.training.data import Dataset
from hpo.training.loop import (
    CUDA_CHECK_EVERY,
    EVAL_BATCH,
    Progress,
    Reporter,
    TrainConfig,
    TrainResult,
    batches_end,
    build_model,
    default_threads,
    on_device,
    pick_device,
)
from hpo.training.model import ACTIVATIONS
from hpo.training.packed_optim import Rows, clip_rows, momentum_of, rule_of

# Optimizer state that starts at one rather than zero.
STATE_START = {"mu_product": 1.0}


def pack_key(config: TrainConfig) -> tuple:
    """What runs must share to train as one stacked model."""
    return (tuple(config.hidden), config.activation, config.batch_norm, config.batch_size)


T = TypeVar("T")


@dataclass
class Run(Generic[T]):
    """One run in a pack: its config, its reporter, and the caller's trial it trains (an
    Optuna trial to the worker; any label to other callers)."""

    config: TrainConfig
    reporter: Reporter | None
    trial: T
    progress: Progress = field(init=False)
    result: TrainResult | None = None
    # Private to the pack: where the run is and what it holds between groups.
    shuffle: torch.Generator = field(init=False, repr=False)
    rng: torch.Generator | None = field(default=None, repr=False)  # dropout's, as alone
    order: torch.Tensor | None = field(default=None, repr=False)
    epoch: int = 0
    started: float = field(default_factory=time.perf_counter)
    n_params: int = 0
    state: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.progress = Progress(self.config, self.reporter)
        self.shuffle = torch.Generator().manual_seed(self.config.seed)

    @property
    def lr(self) -> float:
        return self.config.lr_after(self.epoch)


@dataclass
class _Layer:
    weight: slice  # [in, out], the transpose of nn.Linear's, so that a batched matmul reads it
    shape: tuple[int, int]
    bias: slice | None  # [out] without batch norm
    gamma: slice | None  # batch norm's scale and shift [out]
    beta: slice | None


def _layout(n_in: int, hidden: list[int], n_out: int, batch_norm: bool
            ) -> tuple[list[_Layer], int]:
    """Where each layer's tensors lie in a member's row of P parameters."""
    layers, offset = [], 0

    def take(size: int) -> slice:
        nonlocal offset
        offset += size
        return slice(offset - size, offset)

    for i, width in enumerate([*hidden, n_out]):
        weight = take(n_in * width)
        head = i == len(hidden)
        norm = batch_norm and not head
        bias = take(width) if not norm else None
        gamma, beta = (take(width), take(width)) if norm else (None, None)
        layers.append(_Layer(weight, (n_in, width), bias, gamma, beta))
        n_in = width
    return layers, offset


def _initial_row(config: TrainConfig, data: Dataset, layers: list[_Layer], size: int
                 ) -> tuple[torch.Tensor, int]:
    """A member's initial parameters: exactly the weights `loop.train` starts from."""
    torch.manual_seed(config.seed)
    model = build_model(config, data, torch.device("cpu"))
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    row = torch.empty(size)
    with torch.no_grad():
        for i, (layer, linear) in enumerate(zip(layers, linears, strict=True)):
            row[layer.weight] = linear.weight.t().reshape(-1)
            if layer.bias is not None:
                row[layer.bias] = linear.bias
            if layer.gamma is not None:
                row[layer.gamma] = norms[i].weight
                row[layer.beta] = norms[i].bias
    return row, sum(p.numel() for p in model.parameters())


class _Group:
    """Runs in step: the same shape and batch size, at the same point of an epoch."""

    def __init__(self, key: tuple, pack: Pack) -> None:
        self.key = key
        self.pack = pack
        hidden, activation, self.batch_norm, self.batch_size = key
        self.layers, self.size = _layout(pack.data.n_features, list(hidden),
                                         pack.data.n_classes, self.batch_norm)
        self.activation = ACTIVATIONS[activation]()
        self.last_start = batches_end(len(pack.x_train), self.batch_size, self.batch_norm)
        self.position = 0  # where the next batch starts in the epoch
        self.runs: list[Run] = []
        self.pending: list[torch.Tensor] = []  # step losses [rows] not yet checked
        self.loss_sum = torch.zeros(0)
        self.seen = 0

    # --- membership --------------------------------------------------------------------------

    @property
    def at_epoch_start(self) -> bool:
        return self.position == 0

    def change(self, leaving: list[Run], joining: list[Run]) -> None:
        """Rebuild the stacked tensors for the runs that stay and those that join."""
        for i, run in enumerate(self.runs):
            run.state = self._row_state(i)
        for run in joining:
            run.state["params"], run.n_params = _initial_row(run.config, self.pack.data,
                                                             self.layers, self.size)
            # Alone, dropout draws from the global generator as initialization left it.
            device = self.pack.device
            run.rng = torch.Generator(device)
            if device.type == "cpu":
                run.rng.set_state(torch.get_rng_state())
            else:
                run.rng.manual_seed(run.config.seed)
            run.state["step"] = torch.zeros(1)
            run.state["loss_sum"] = torch.zeros(())
            widths = [layer.shape[1] for layer in self.layers if layer.gamma is not None]
            run.state.update({f"running_mean{i}": torch.zeros(w) for i, w in enumerate(widths)})
            run.state.update({f"running_var{i}": torch.ones(w) for i, w in enumerate(widths)})
            run.order = torch.randperm(len(self.pack.x_train), generator=run.shuffle)
        gone = {id(run) for run in leaving}
        # Rows sorted by optimizer, so that each optimizer's members are one slice of rows.
        self.runs = sorted([r for r in self.runs if id(r) not in gone] + joining,
                           key=lambda r: r.config.optimizer)
        if self.runs:
            self._stack()

    def _row_state(self, i: int) -> dict[str, torch.Tensor]:
        state = {"params": self.params[i], "step": self.steps[i], "loss_sum": self.loss_sum[i]}
        for j, (mean, var) in enumerate(self.norm_stats):
            state[f"running_mean{j}"], state[f"running_var{j}"] = mean[i], var[i]
        for start, _, _, _, block_state in self.blocks:
            for name, tensor in block_state.items():
                if start <= i < start + len(tensor):
                    state[f"opt_{name}"] = tensor[i - start]
        return state

    def _stack(self) -> None:
        device = self.pack.device
        runs = self.runs

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(1)

        def stacked(name: str) -> torch.Tensor:
            return torch.stack([r.state[name] for r in runs]).to(device)

        self.params = stacked("params")
        self.grad = torch.zeros_like(self.params)
        self.steps = stacked("step")
        self.norm_stats = [(stacked(f"running_mean{j}"), stacked(f"running_var{j}"))
                           for j in range(sum(layer.gamma is not None for layer in self.layers))]
        self.lr = column([r.lr for r in runs])
        momenta = [momentum_of(r.config.optimizer, r.config.momentum) for r in runs]
        self.momentum = column(momenta)
        self.weight_decay = column([r.config.weight_decay for r in runs])
        clips = [r.config.grad_clip for r in runs]
        self.clip = (column([c if c is not None else math.inf for c in clips])
                     if any(c is not None for c in clips) else None)
        self.dropout = any(r.config.dropout > 0 for r in runs)
        self.loss_sum = stacked("loss_sum")  # this epoch's so far
        # One block of rows per optimizer (and per Nesterov-or-not: momentum 0 has none).
        self.blocks = []
        start = 0
        while start < len(runs):
            name = runs[start].config.optimizer
            rule, nesterov = rule_of(name, momenta[start])
            end = start
            while (end < len(runs) and runs[end].config.optimizer == name
                   and rule_of(name, momenta[end])[1] == nesterov):
                end += 1
            names = {k[4:] for r in runs[start:end] for k in r.state if k.startswith("opt_")}
            block_state = {}
            for opt_name in names:
                like = next(r.state[f"opt_{opt_name}"] for r in runs[start:end]
                            if f"opt_{opt_name}" in r.state)
                fill = STATE_START.get(opt_name, 0.0)
                block_state[opt_name] = torch.stack(
                    [r.state.get(f"opt_{opt_name}", torch.full_like(like, fill))
                     for r in runs[start:end]]).to(device)
            # Views of the group's columns: the lr set each epoch and the step count reach it.
            rows = Rows.of(self.lr[start:end], self.momentum[start:end],
                           self.weight_decay[start:end], self.steps[start:end], nesterov)
            self.blocks.append((start, end, rule, rows, block_state))
            start = end
        for run in runs:
            run.state = {}
        # The layers, as views of the one buffer, their gradients views of the other.
        self.views = []
        for layer in self.layers:
            views = {}
            for name in ("weight", "bias", "gamma", "beta"):
                where = getattr(layer, name)
                if where is None:
                    continue
                shape = (len(runs), *layer.shape) if name == "weight" else (len(runs), -1)
                view = self.params[:, where].view(shape).requires_grad_()
                view.grad = self.grad[:, where].view(shape)
                views[name] = view
            self.views.append(views)

    # --- training ----------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Logits [rows, batch, classes] of every member; `x` is [rows, batch, features], or
        [batch, features] shared by all."""
        h = x
        last = len(self.views) - 1
        for i, views in enumerate(self.views):
            weight = views["weight"]
            if "bias" in views:
                bias = views["bias"].unsqueeze(1)
                h = (torch.baddbmm(bias, h, weight) if h.dim() == 3
                     else torch.matmul(h, weight) + bias)
            else:
                h = torch.bmm(h, weight) if h.dim() == 3 else torch.matmul(h, weight)
            if i == last:
                return h
            if self.batch_norm:
                h = self._batch_norm(h, views, self.norm_stats[i], training)
            h = self.activation(h)
            if training and self.dropout:
                h = h * self._dropout_masks(h.shape[1:])
        return h

    def _dropout_masks(self, shape: torch.Size) -> torch.Tensor:
        """Each member's dropout mask, drawn from its own generator as `nn.Dropout` draws it
        alone (so a packed run sees the very masks it would alone)."""
        device = self.pack.device
        return torch.stack([
            torch.empty(shape, device=device)
            .bernoulli_(1 - run.config.dropout, generator=run.rng).div_(1 - run.config.dropout)
            if run.config.dropout > 0 else torch.ones(shape, device=device)
            for run in self.runs])

    def _batch_norm(self, h: torch.Tensor, views: dict[str, torch.Tensor],
                    stats: tuple[torch.Tensor, torch.Tensor], training: bool) -> torch.Tensor:
        rows, batch, width = h.shape
        mean, var = stats
        if not training:
            scale = views["gamma"] * torch.rsqrt(var + 1e-5)
            return (h - mean.unsqueeze(1)) * scale.unsqueeze(1) + views["beta"].unsqueeze(1)
        # As [batch, rows x width], each member's feature is one channel of torch's own batch
        # norm: its statistics, its running averages (momentum 0.1, unbiased variance), in
        # one fused operation.
        flat = h.transpose(0, 1).reshape(batch, rows * width)
        out = F.batch_norm(flat, mean.view(-1), var.view(-1), views["gamma"].reshape(-1),
                           views["beta"].reshape(-1), training=True, momentum=0.1, eps=1e-5)
        return out.view(batch, rows, width).transpose(0, 1)

    def step(self) -> list[Run]:
        """Train every run one batch; the runs that ended with it."""
        pack = self.pack
        end = min(self.position + self.batch_size, self.last_start)
        index = torch.stack([run.order[self.position:end] for run in self.runs]).to(pack.device)
        logits = self._forward(pack.x_train[index], training=True)
        losses = F.cross_entropy(logits.flatten(0, 1), pack.y_train[index].flatten(),
                                 reduction="none").view(len(self.runs), -1).mean(1)
        self.grad.zero_()
        with warnings.catch_warnings():
            # The layers are views of one buffer and their gradients views of another (so
            # the optimizer updates all at once); autograd accumulates into such gradients
            # in place, correctly, and warns (once a process) that it would lay them out
            # otherwise.
            warnings.filterwarnings("ignore", message="grad and param do not obey")
            losses.sum().backward()
        with torch.no_grad():
            if self.clip is not None:
                clip_rows(self.grad, self.clip)
            self.steps += 1
            for start, stop, rule, rows, state in self.blocks:
                rule(self.params[start:stop], self.grad[start:stop], rows, state)
        losses = losses.detach()
        self.loss_sum += losses * (end - self.position)
        self.seen += end - self.position
        self.position = end
        self.pending.append(losses)
        epoch_ends = self.position >= self.last_start
        ended = []
        if len(self.pending) >= pack.check_every or epoch_ends:
            ended = self._check_losses()
        if epoch_ends:
            ended = self._end_epoch()
        elif ended:
            self._evaluate_and_end(ended)
            self.change(ended, [])
        return ended

    def _check_losses(self) -> list[Run]:
        """Feed the held step losses to each run's divergence rule; the runs it stopped."""
        losses = torch.stack(self.pending).t().tolist()  # [rows][steps]
        self.pending = []
        return [run for run, run_losses in zip(self.runs, losses, strict=True)
                if run.progress.record_losses(run_losses)]

    @torch.no_grad()
    def _evaluate(self) -> tuple[list[float], list[float]]:
        """Each member's validation loss and accuracy."""
        pack = self.pack
        rows = len(self.runs)
        loss_sum = torch.zeros(rows, device=pack.device)
        correct = torch.zeros(rows, device=pack.device)
        for start in range(0, len(pack.x_val), EVAL_BATCH):
            logits = self._forward(pack.x_val[start:start + EVAL_BATCH], training=False)
            target = pack.y_val[start:start + EVAL_BATCH]
            loss_sum += F.cross_entropy(logits.flatten(0, 1), target.repeat(rows),
                                        reduction="none").view(rows, -1).sum(1)
            correct += (logits.argmax(2) == target).sum(1)
        n = len(pack.x_val)
        return (loss_sum / n).tolist(), (correct / n).tolist()

    def _metrics(self) -> Iterator[tuple[Run, dict[str, float]]]:
        train_losses = (self.loss_sum / max(self.seen, 1)).tolist()
        val_losses, accuracies = self._evaluate()
        for run, train_loss, val_loss, accuracy in zip(self.runs, train_losses, val_losses,
                                                        accuracies, strict=True):
            yield run, {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": accuracy}

    def _evaluate_and_end(self, diverged: list[Run]) -> None:
        """Close the epoch of runs that diverged in it, as `loop.train` does."""
        for run, metrics in self._metrics():
            if run in diverged:
                run.progress.end_epoch(run.epoch, metrics)
                self._finish(run)

    def _end_epoch(self) -> list[Run]:
        ended = []
        for run, metrics in self._metrics():
            stops = run.progress.end_epoch(run.epoch, metrics)
            run.epoch += 1
            if stops or run.epoch >= run.config.epochs:
                self._finish(run)
                ended.append(run)
            else:
                run.order = torch.randperm(len(self.pack.x_train), generator=run.shuffle)
        self.position, self.seen = 0, 0
        self.loss_sum.zero_()
        if ended:
            self.change(ended, [])
        if self.runs:
            self.lr.copy_(torch.tensor([r.lr for r in self.runs]).unsqueeze(1))
        return ended

    def _finish(self, run: Run) -> None:
        run.result = run.progress.result(self.pack.data.n_classes, run.n_params,
                                         self.pack.device, run.started)


class Pack:
    """Up to `size` training runs at once; runs that can share a stacked model do."""

    def __init__(self, data: Dataset, size: int, device: str = "auto",
                 threads: int | None = None) -> None:
        self.data = data
        self.size = size
        self.device = pick_device(device)
        self.check_every = 1 if self.device.type == "cpu" else CUDA_CHECK_EVERY
        torch.set_num_threads(threads or default_threads())
        self.x_train, self.y_train, self.x_val, self.y_val = on_device(data, self.device)
        self.groups: list[_Group] = []

    def __len__(self) -> int:
        return sum(len(group.runs) for group in self.groups)

    @property
    def has_room(self) -> bool:
        return len(self) < self.size

    def add(self, run: Run) -> None:
        """Start `run`: in a group of its shape at an epoch's start, else in a new group."""
        if pick_device(run.config.device) != self.device:
            raise ValueError(f"a run on {run.config.device} cannot join a pack on {self.device}")
        key = pack_key(run.config)
        group = next((g for g in self.groups if g.key == key and g.at_epoch_start), None)
        if group is None:
            group = _Group(key, self)
            self.groups.append(group)
        group.change([], [run])

    def step(self) -> list[Run]:
        """One batch for every run; the runs that ended (each with its `result`)."""
        ended = []
        for group in self.groups:
            ended += group.step()
        self.groups = [g for g in self.groups if g.runs]
        return ended


def train_packed(configs: list[TrainConfig], data: Dataset,
                 reporters: list[Reporter | None] | None = None) -> list[TrainResult]:
    """Train every config at once, as packed runs; their results, in order."""
    reporters = reporters or [None] * len(configs)
    pack = Pack(data, len(configs), configs[0].device, configs[0].threads)
    runs = [Run(config, reporter, i) for i, (config, reporter)
            in enumerate(zip(configs, reporters, strict=True))]
    for run in runs:
        pack.add(run)
    while len(pack):
        pack.step()
    return [run.result for run in runs]
