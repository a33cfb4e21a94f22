"""The Python API for notebooks and scripts: `hpo.run(path, **overrides)` and `hpo.load(path)`.

Both return a plain `optuna.Study`. Errors are `hpo.errors.HpoError`s whose message is the
line `hpo` would print. Nothing here is imported until called, so `import hpo` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError

if TYPE_CHECKING:
    import optuna

# Keyword arguments that size this run, as `hpo run`'s options do; any other keyword replaces
# the top-level field of that name in the study file.
RUN_OPTIONS = ("storage", "n_trials", "timeout", "workers", "quiet", "worker_id")


def run(path: str | Path, **overrides: Any) -> optuna.Study:
    """Run the study file at `path` as `hpo run` does (resuming its study) and return the study.

    `storage`, `n_trials`, `timeout`, `workers`, `quiet` and `worker_id` act as `hpo run`'s
    options; any other keyword replaces that top-level field of the file, e.g.
    `hpo.run("study.yaml", n_trials=20, sampler={"type": "random", "seed": 1})`.
    Stopped by Ctrl-C, it returns the study as it stands (every finished trial kept).
    """
    from hpo.worker import runner

    options = {k: overrides.pop(k) for k in RUN_OPTIONS if k in overrides}
    _check_counts(options)
    workers = options.pop("workers", 1)
    spec = _load_spec(Path(path), overrides)
    if workers > 1 and overrides:
        raise HpoError(f"workers={workers}: each worker process reads {path} as written; put "
                       f"{', '.join(overrides)} in the file, or run with workers=1")
    run_options = runner.RunOptions(**options)
    if spec.stages is not None:
        from hpo.wisdom.stages import run_staged

        results = run_staged(spec, run_options, workers)
        result = results[-1].result if results else None
    elif workers > 1:
        from hpo.worker.workers import run_local_workers

        result = run_local_workers(spec, run_options, workers)
    else:
        result = runner.run(spec, run_options)
    if result is None or result.study is None:
        return load(path, storage=options.get("storage"))
    return result.study


def _check_counts(options: dict[str, Any]) -> None:
    """Refuse what `hpo run` refuses: a count below 1 or a timeout that is not positive."""
    for name, least in (("n_trials", 1), ("workers", 1)):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < least):
            raise HpoError(f"hpo.run: {name}={value!r}: give a whole number of at least "
                           f"{least}, as `hpo run --{name.replace('_', '-')}` takes")
    timeout = options.get("timeout")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise HpoError(f"hpo.run: timeout={timeout!r}: give a number of seconds above 0, or "
                       "leave it out for no limit")


def load(path: str | Path, storage: str | None = None, study: str | None = None
         ) -> optuna.Study:
    """The existing study of the study file at `path` (of a staged file, its latest stage
    started, unless `study` names one)."""
    from hpo.spec import load_spec
    from hpo.store.existing import existing_study

    return existing_study(load_spec(path), storage, study)[0]


def _load_spec(path: Path, overrides: dict[str, Any]) -> Any:
    """The study file with `overrides` in place of its top-level fields, validated."""
    import yaml

    from hpo.spec import StudySpec, did_you_mean, load_spec, parse_spec

    spec = load_spec(path)  # the file's own mistakes are reported as the file's
    if not overrides:
        return spec
    fields = [*StudySpec.model_fields, *RUN_OPTIONS]
    for name in overrides:
        if name not in fields:
            raise HpoError(f"hpo.run: unknown keyword {name!r}; {did_you_mean(name, fields)}"
                           f"give a study-file field or one of {', '.join(RUN_OPTIONS)}")
    data = yaml.safe_load(path.read_text())
    return parse_spec({**data, **overrides}, path)
