"""How many trials a worker trains at once (`train.pack`), what `auto` picks, and how it runs
them: one at a time, or packed.

The worker's loop (`hpo.worker.runner`) asks as many trials as its strategy has room for, hands
them to the strategy's `run`, and records the outcomes it returns. `OneAtATime` runs each
trial to its end. `Packed` keeps up to K trials of the built-in trainer training in a `Pack`
(`hpo.training.pack`): each `run` starts the new trials, trains every trial one batch and
tells the study how each that ended, ended; it has room for more only once one has ended.

Packing pays where a training step is per-operation overhead rather than arithmetic, and
only if it beats what `hpo run` already does on a CPU: one one-thread worker per core. On 2
CPU cores it does not, so `auto` trains one trial at a time. Measured there (medians of 3
seeds, whole `hpo run` commands, 2 workers; `benchmarks/search_quality.py`): the quickstart
in 11.5 s one at a time, 15.5 s with `pack: 4`; with its batch size fixed at 32, 13.9 s and
16.3 s. Training alone, in one process on one thread (`benchmarks/pack.py`), 8 runs at batch
32 packed train 1.4-1.8x the trials per second of one at a time, 4 runs 1.1x, and at batch
256 0.9x: a 128-wide layer's products are arithmetic the stack does not share. On a GPU, where
overhead is nearly all of a small model's step, packing should pay most, but no GPU has
measured it yet (`python benchmarks/pack.py --device cuda`); until one does, `auto` is one
there too, and `pack: K` asks for K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from hpo.worker.objective import TrainerObjective

if TYPE_CHECKING:
    import optuna

    from hpo.spec import StudySpec
    from hpo.training.pack import Pack, Run
    from hpo.worker.trial_run import Outcome, StartedTrial, TrialRunner


def pack_size(spec: StudySpec) -> int:
    """The trials one worker trains at once: the study file's `train.pack` (`auto`: one, see
    the module's doc); one for a user's objective, which cannot be packed."""
    if not spec.objective.trainer:
        return 1
    pack = spec.objective.train.pack
    return 1 if pack == "auto" else pack


class Strategy(Protocol):
    """How a worker runs the trials it asks."""

    @property
    def room(self) -> int:
        """How many new trials to ask now."""
        ...

    def __len__(self) -> int:
        """The trials in hand: started, their end not yet told."""
        ...

    def run(self, study: optuna.Study, asked: list[optuna.Trial]) -> list[Outcome]:
        """Start the asked trials and run; how those that ended ended, each told the study."""
        ...

    def close(self) -> list[Outcome]:
        """Fail the trials still in hand (the worker is stopping) and tell the study."""
        ...


def strategy(spec: StudySpec, trials: TrialRunner) -> Strategy:
    """The spec's `pack_size` trials packed, where the objective is the built-in trainer;
    else one at a time."""
    size = pack_size(spec)
    objective = trials.objective
    if size > 1 and isinstance(objective, TrainerObjective):
        from hpo.training.pack import Pack

        train = spec.objective.train
        return Packed(trials, objective, Pack(objective.data, size, train.device, train.threads))
    return OneAtATime(trials)


class OneAtATime:
    """Runs each trial to its end before the worker asks the next."""

    room = 1

    def __init__(self, trials: TrialRunner) -> None:
        self.trials = trials

    def __len__(self) -> int:
        return 0  # every trial has ended when `run` returns

    def run(self, study: optuna.Study, asked: list[optuna.Trial]) -> list[Outcome]:
        return [self.trials(study, trial) for trial in asked]

    def close(self) -> list[Outcome]:
        return []


class Packed:
    """Up to `pack.size` trials training at once, each told the moment it ends."""

    def __init__(self, trials: TrialRunner, objective: TrainerObjective, pack: Pack) -> None:
        self.trials = trials
        self.objective = objective
        self.pack = pack
        # The pack's runs and their trials, by trial number, until the study is told their end.
        self.training: dict[int, tuple[Run[optuna.Trial], StartedTrial]] = {}
        # Asking again before a trial ends would find the same counts: a query per batch.
        self.refill = True

    @property
    def room(self) -> int:
        return self.pack.size - len(self.pack) if self.refill else 0

    def __len__(self) -> int:
        return len(self.training)

    def run(self, study: optuna.Study, asked: list[optuna.Trial]) -> list[Outcome]:
        outcomes = self._start(study, asked)
        self.refill = not self.training
        if self.training:
            outcomes += self._step()
        return outcomes

    def close(self) -> list[Outcome]:
        if not self.training:
            return []
        self.pack.groups.clear()
        stopped = self.trials.signals.stop.is_set()
        return self._end(KeyboardInterrupt() if stopped
                         else RuntimeError("the worker stopped with an error"))

    def _start(self, study: optuna.Study, asked: list[optuna.Trial]) -> list[Outcome]:
        """Add the asked trials to the pack; the outcomes of those that failed at once."""
        failed = []
        for trial in asked:
            started = self.trials.begin(study, trial)
            try:
                run = self.objective.start(trial)
                self.pack.add(run)
            except Exception as e:  # a bad suggestion: this trial fails, the pack goes on
                failed.append(self.trials.end(started, self._finisher(trial, e)))
            else:
                self.training[trial.number] = (run, started)
        return failed

    def _step(self) -> list[Outcome]:
        """Train every trial in the pack one batch; how those that ended ended."""
        try:
            with self.trials.signals.objective_running():
                self.pack.step()
        except BaseException as e:  # a signal, or a failure of the stacked model: every trial
            self.pack.groups.clear()
            return self._end(e)
        return self._end(None)

    def _end(self, error: BaseException | None) -> list[Outcome]:
        """Tell the study how every run that ended ended: its result, else `error`, which
        ends them all. A run leaves `training` before it is told, so an error in telling
        one leaves the rest to `close`."""
        ended = [number for number, (run, _) in self.training.items()
                 if run.result is not None or error is not None]
        outcomes = []
        for number in ended:
            run, started = self.training.pop(number)
            result = run.result if run.result is not None else error
            outcomes.append(self.trials.end(started, self._finisher(run.trial, result)))
        if ended:
            self.refill = True
        return outcomes

    def _finisher(self, trial: optuna.Trial, result: Any) -> Callable[[], float]:
        """The rest of a packed trial's objective: record its training result, or raise."""
        def finish() -> float:
            if isinstance(result, BaseException):
                raise result
            return self.objective.finish(trial, result)
        return finish
