"""Configurations queued to run first (`hpo enqueue`): read, checked against the space, queued.

A queued configuration is an Optuna WAITING trial: the next worker claims it before the
sampler proposes anything, and once it finishes it counts against n_trials like any trial.
Entries a configuration leaves out are the sampler's to pick.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hpo.errors import HpoError
from hpo.spec import allowed_values, did_you_mean, fits, value_problem

if TYPE_CHECKING:

    from hpo.spec import StudySpec


def read_configurations(path: Path) -> list[dict[str, Any]]:
    """A YAML or JSON file of one configuration (a mapping of values, or `hpo best`'s
    output) or of a list of them."""
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML too
    except OSError as e:
        raise HpoError(f"--from {path}: cannot read it ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise HpoError(f"--from {path}: not YAML or JSON ({str(e).splitlines()[0]})") from e
    items = data if isinstance(data, list) else [data]
    configurations = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("params"), dict):
            item = item["params"]  # `hpo best --format json`: {"number", "value", "params"}
        if not isinstance(item, dict) or not item:
            where = f"--from {path}" + (f": item {i}" if isinstance(data, list) else "")
            raise HpoError(f"{where}: give a mapping of search-space values, e.g. "
                           f"{{lr: 0.01, optimizer: adam}}; got {item!r}")
        configurations.append(item)
    return configurations


def check_configuration(spec: StudySpec, params: dict[str, Any], where: str) -> None:
    """Refuse, in one line, a configuration the study's search space (or the built-in
    trainer) cannot take."""
    space = spec.search_space
    for name, value in params.items():
        entry = space.get(name)
        if entry is None:
            raise HpoError(f"{where}: {name!r} is not in {spec.source.name}'s search_space; "
                           f"{did_you_mean(name, list(space))}it has: {', '.join(space)}")
        fix = "give a value the trainer takes"
        problem = value_problem(name, value, fix) if spec.objective.trainer else None
        if problem is not None:
            raise HpoError(f"{where}: {name}: {problem}")
        if not fits(entry, value):
            raise HpoError(f"{where}: {name}={value!r} is outside the search space "
                           f"({name}: {allowed_values(entry)} in {spec.source.name}); give a "
                           "value it can take")
        for parent, allowed in (entry.when or {}).items():
            if params.get(parent) not in allowed:
                raise HpoError(f"{where}: {name} is searched only when {parent} is one of "
                               f"{allowed}; give {parent} too, or leave {name} out")


def enqueue(spec: StudySpec, configurations: list[dict[str, Any]],
            cli_url: str | None = None) -> str:
    """Queue each configuration as a WAITING trial of the spec's study (created if new), in
    order; returns the storage URL."""
    from hpo.worker.opening import opened_study

    with opened_study(spec, cli_url) as (study, url):
        for params in configurations:
            study.enqueue_trial(params, user_attrs={"enqueued_by": "hpo enqueue"})
    return url


def left_to_sampler(spec: StudySpec, configurations: list[dict[str, Any]]) -> list[str]:
    """The entries some configuration leaves for the sampler to pick (conditional entries
    only where the configuration meets their condition)."""
    return [name for name, entry in spec.search_space.items() if any(
        name not in params and all(params.get(parent, allowed[0]) in allowed
                                   for parent, allowed in (entry.when or {}).items())
        for params in configurations)]
