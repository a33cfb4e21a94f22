"""The callable a trial runs: a user's objective, found from `objective.callable`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import ObjectiveImportError
from hpo.spec import closest
from hpo.spec.distributions import suggest_all

if TYPE_CHECKING:
    import optuna

    from hpo.spec import StudySpec
    from hpo.training.pack import Run

Objective = Callable[["optuna.Trial"], float]


def _import_file(path: Path, where: str) -> Any:
    if not path.is_file():
        raise ObjectiveImportError(
            f"{where}: no such file {str(path)!r} (file paths are relative to the study file)"
        )
    name = f"hpo_objective_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so pickling and dataclasses in the file work
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ObjectiveImportError(
            f"{where}: importing {str(path)!r} failed: {_one_line(e)}"
        ) from e
    return module


def _import_module(name: str, folder: Path, where: str) -> Any:
    # Modules beside the study file import without installing them.
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise ObjectiveImportError(
                f"{where}: cannot import module {name!r} (no module named {e.name!r}); install "
                "it, put it beside the study file, or give a file: 'path/to/file.py:function'"
            ) from e
        raise ObjectiveImportError(f"{where}: importing {name!r} failed: {_one_line(e)}") from e
    except Exception as e:
        raise ObjectiveImportError(f"{where}: importing {name!r} failed: {_one_line(e)}") from e


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    if isinstance(error, SyntaxError) and error.lineno:
        text += f" (line {error.lineno})"
    return text


def load_callable(spec: StudySpec) -> Objective:
    """Import the user's objective function named by `objective.callable`."""
    target, function_name = spec.objective.callable.rsplit(":", 1)
    where = f"{spec.source}: objective.callable"
    folder = spec.source.parent
    if target.endswith(".py"):
        module = _import_file(folder / target, where)
    else:
        module = _import_module(target, folder, where)
    function = getattr(module, function_name, None)
    if function is None:
        public = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        hint = closest(function_name, public)
        suffix = f"; did you mean {hint!r}?" if hint else ""
        raise ObjectiveImportError(
            f"{where}: {target!r} has no function {function_name!r}{suffix}"
        )
    if not callable(function):
        raise ObjectiveImportError(f"{where}: {target}:{function_name} is not callable")
    return function


def build_objective(spec: StudySpec) -> Objective:
    """The function a trial runs: suggest the search space, then call the objective.

    A user's function gets the trial with every search-space entry already suggested
    (`trial.params` holds them); it may report, ask `should_prune()` and suggest more.
    The built-in trainer's data is read here, once, before any trial.
    """
    if spec.objective.trainer:
        return TrainerObjective(spec)
    import optuna

    user_function = load_callable(spec)

    def objective(trial: optuna.Trial) -> float:
        suggest_all(trial, spec.search_space)
        try:
            return user_function(trial)
        except optuna.TrialPruned as e:
            raise optuna.TrialPruned(why_pruned(trial, str(e))) from e

    return objective


def why_pruned(trial: optuna.Trial, said: str | None = None) -> str:
    """Why `trial` was pruned, as the TrialPruned ending its objective carries it (the one
    way a reason reaches `hpo.worker.trial_run`): the divergence rule's reason when its recorder
    stopped it at a reported cost, else the study's early pruner's when that stopped it, else
    what the objective said ("" when it said nothing)."""
    from hpo.search.pruners import prune_reason
    from hpo.store.recorder import TrialRecorder

    recorder = trial.storage
    ruled = recorder.prune_reason if isinstance(recorder, TrialRecorder) else None
    return ruled or prune_reason(trial.study.pruner, trial.number) or said or ""


def check_objective(spec: StudySpec) -> None:
    """Raise the error `build_objective` would for a bad callable or data file, cheaply.

    For a launcher that starts workers: it imports neither torch nor a built-in dataset
    (the spec already checked its name), which would cost seconds before any worker starts.
    """
    if not spec.objective.trainer:
        load_callable(spec)
    elif spec.objective.data.path:
        load_trainer_data(spec)


def load_trainer_data(spec: StudySpec) -> Any:
    """The built-in trainer's data, read and checked, errors naming the study file."""
    from hpo.training.data import DataConfig, load_data

    config = DataConfig(**spec.objective.data.model_dump())
    return load_data(config, spec.source.parent, f"{spec.source}: objective.data")


def hidden_layers(value: Any) -> list[int]:
    """A searched `hidden` choice: 128 (one layer), "128,64" (widths), "128x3" (3 layers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    text = str(value).replace(" ", "")
    if "x" in text:
        width, layers = text.split("x", 1)
        return [int(width)] * int(layers)
    return [int(width) for width in text.split(",") if width]


def trainer_config(spec: StudySpec, params: dict[str, Any]) -> Any:
    """The TrainConfig for one trial: the spec's model and train sections, then its params."""
    from hpo.training.config import TrainConfig

    values = {**spec.objective.model.model_dump(),
              **spec.objective.train.model_dump(exclude={"pack"})}
    values.update({k: v for k, v in params.items() if k in values})
    if "hidden" in params:
        values["hidden"] = hidden_layers(params["hidden"])
    if "hidden_units" in params or "n_layers" in params:
        width = params.get("hidden_units", values["hidden"][0] if values["hidden"] else 64)
        values["hidden"] = [width] * params.get("n_layers", len(values["hidden"]))
    divergence = spec.pruner.divergence
    return TrainConfig(**values, metric=spec.metric,
                       divergence_factor=divergence.factor if divergence else None)


class _TrialReporter:
    """Adapts an Optuna trial to the training loop's reporter."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def report(self, epoch: int, metrics: dict[str, float]) -> None:
        self.trial.report(metrics[self.metric], epoch)

    def should_stop(self) -> bool:
        return self.trial.should_prune()


def _finite_or_none(values: list[float]) -> list[float | None]:
    # JSON has no NaN: the dashboard could not read a list holding one.
    return [v if v == v and abs(v) != float("inf") else None for v in values]


class TrainerObjective:
    """The built-in trainer as a trial's objective: called, it trains the trial's model alone;
    `start` and `finish` let a worker train several trials at once, packed (`hpo.training.pack`).
    The data is read, and torch warmed up, once, here."""

    def __init__(self, spec: StudySpec) -> None:
        from hpo.training import loop

        self.spec = spec
        self.data = load_trainer_data(spec)
        loop.warm_up()

    def __call__(self, trial: optuna.Trial) -> float:
        from hpo.training import loop

        config = self.config(trial)
        return self.finish(trial, loop.train(config, self.data,
                                             _TrialReporter(trial, self.spec.metric)))

    def config(self, trial: optuna.Trial) -> Any:
        """Suggest the trial's search space; the TrainConfig it gives."""
        suggest_all(trial, self.spec.search_space)
        return trainer_config(self.spec, trial.params)

    def start(self, trial: optuna.Trial) -> Run[optuna.Trial]:
        """The trial as a run to add to a `Pack`."""
        from hpo.training.pack import Run

        return Run(self.config(trial), _TrialReporter(trial, self.spec.metric), trial)

    def finish(self, trial: optuna.Trial, result: Any) -> float:
        """Record a finished training run on its trial: its value, or why it was pruned."""
        import optuna

        attrs = {
            "epochs_run": result.epochs_run,
            "initial_loss": _finite_or_none([result.initial_loss])[0],
            "expected_initial_loss": round(result.expected_initial_loss, 6),
            "n_params": result.n_params,
            "device": result.device,
            "threads": result.threads,
            "train_seconds": round(result.train_seconds, 3),
            **{name: _finite_or_none(values) for name, values in result.history.items()},
        }
        if result.stop in ("reporter", "early"):
            attrs["stop_reason"] = result.stop_reason
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if result.stop == "diverged":
            raise optuna.TrialPruned(why_pruned(trial, result.stop_reason))
        if result.stop == "reporter":  # the trial's should_prune(): the study's pruner said so
            raise optuna.TrialPruned(why_pruned(trial))
        if result.best_value is None:
            raise ValueError(f"no epoch produced a finite {self.spec.metric}")
        return result.best_value
