"""The callable a trial runs: a user's objective, found from `objective.callable`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import ObjectiveImportError
from hpo.space import suggest_all
from hpo.spec import closest

if TYPE_CHECKING:
    import optuna

    from hpo.spec import StudySpec

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
    """The function a trial runs: suggest the search space, then call the user's objective.

    The user's function gets the trial with every search-space entry already suggested
    (`trial.params` holds them); it may report, ask `should_prune()` and suggest more.
    """
    user_function = load_callable(spec)

    def objective(trial: optuna.Trial) -> float:
        suggest_all(trial, spec.search_space)
        return user_function(trial)

    return objective
