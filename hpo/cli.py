"""The `hpo` command: each subcommand parses, calls one library function, prints."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from hpo.errors import HpoError
from hpo.report import jsonout

# A reader that went away (`hpo status | head -1`) is no mistake to report: hpo leaves quietly
# with the status of a process that SIGPIPE ended (128 + 13), as `cat` or `grep` would there, so
# a shell, and `set -o pipefail`, read it as they read theirs.
CLOSED_OUTPUT_EXIT = 141
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


class _Cli(click.Group):
    """Turns HpoError into one `Error: ...` line and exit 1; --debug shows the traceback.
    A closed standard output ends it quietly, a full disk in one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:  # `hpo --help | head -1`
            _closed_output()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HpoError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # A study file with several mistakes lists them all, an `Error:` line each.
            *first, last = str(e).splitlines() or [""]
            for line in first:
                click.echo(f"Error: {line}", err=True)
            raise click.ClickException(last) from None
        except KeyboardInterrupt:  # Ctrl-C before a command could install its own handling
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("Stopped by SIGINT.", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            _closed_output()
        except OSError as e:  # the files a command writes are `_writing`'s: standard output
            if e.errno not in FULL_DISK or (ctx.obj and ctx.obj.get("debug")):
                raise
            _drop_unwritable_output()
            raise click.ClickException(
                f"cannot write {e.filename or 'standard output'}: no space left on device; "
                "free some space, or write elsewhere") from None


def _drop_unwritable_output() -> None:
    """Point standard output or error at /dev/null if it cannot take what it holds, so that
    the exit's flush does not fail on it again ("Exception ignored ...")."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):  # not a file descriptor's stream (tests)
                pass


def _closed_output() -> NoReturn:
    _drop_unwritable_output()
    raise click.exceptions.Exit(CLOSED_OUTPUT_EXIT)


def _check_output(path: Path, option: str = "--out", beside: bool = False) -> None:
    """Refuse an output file that cannot be written, before any work starts: one line naming
    the folder or file and the fix. `beside`: more files are written in its folder."""
    folder = path.parent
    if not folder.exists():
        raise HpoError(f"{option} {path}: the folder {folder} does not exist; create it "
                       f"(mkdir -p {folder}) or write elsewhere")
    if not folder.is_dir():
        raise HpoError(f"{option} {path}: {folder} is not a folder; write elsewhere")
    if path.is_dir():
        raise HpoError(f"{option} {path}: that is a folder; name a file in it")
    if path.exists() and not os.access(path, os.W_OK):
        raise HpoError(f"{option} {path}: the file is not writable (permission denied); "
                       "write elsewhere")
    if (beside or not path.exists()) and not os.access(folder, os.W_OK | os.X_OK):
        raise HpoError(f"{option} {path}: cannot write in the folder {folder} (permission "
                       "denied); write elsewhere")


@contextmanager
def _writing(path: Path, option: str = "--out") -> Iterator[None]:
    """An OSError while writing the output `path` (a full disk, a folder gone since it was
    checked) as one line naming it; a closed pipe passes on, to end the command quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        if e.errno in FULL_DISK:
            why = "no space left on device; free some space, or write elsewhere"
        else:
            why = f"{e.strerror or e}; write elsewhere"
        which = f" {e.filename}" if e.filename and Path(e.filename) != path else ""
        raise HpoError(f"{option} {path}: cannot write{which}: {why}") from e


def _configure_logging(debug: bool) -> None:
    import warnings

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hpo: %(message)s"))
    logger = logging.getLogger("hpo")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
    if not debug:
        warnings.filterwarnings("ignore", module="optuna")


def _quiet_optuna(debug: bool) -> None:
    import optuna

    # hpo reports trial failures itself in one line; Optuna's own log adds a traceback.
    optuna.logging.set_verbosity(optuna.logging.DEBUG if debug else optuna.logging.ERROR)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and Optuna's own log.")
@click.version_option(package_name="hpo")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Hyperparameter search for PyTorch models, declared in one YAML file.

    Every study is a plain Optuna study in a SQL database (SQLite beside the
    study file by default), so optuna and optuna-dashboard read it too.

    Start: hpo init (writes study.yaml), then hpo run study.yaml
    """
    ctx.obj = {"debug": debug}
    _configure_logging(debug)


spec_argument = click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))


@main.command()
@spec_argument
@click.option("--storage", help="Storage URL; overrides $HPO_STORAGE and the file's storage.")
@click.option("--n-trials", type=click.IntRange(min=1),
              help="Finished trials the study should have.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds to run.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Worker processes to start on this machine. [default: one per usable CPU "
                   "for the built-in trainer on the CPU when each gets 4 trials or more; "
                   "else 1]")
@click.option("--worker-id", envvar="HPO_WORKER_ID", default="",
              help="A label recorded on this worker's trials (user attr worker_id); with "
                   "--workers N the children are ID.0 .. ID.N-1. [env: HPO_WORKER_ID]")
# `--workers N` starts its workers with --no-note: the parent writes the note once, at the end.
@click.option("--note/--no-note", default=True, hidden=True)
# ... and, for a staged study, with --stage: the parent runs the stages one after another.
@click.option("--stage", hidden=True)
# ... and with --outcomes-file, where each writes how its trials ended, for "Ran N trials".
@click.option("--outcomes-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True)
@click.pass_context
def run(
    ctx: click.Context, spec_file: Path, storage: str | None, n_trials: int | None,
    timeout: float | None, quiet: bool, workers: int | None, worker_id: str, note: bool,
    stage: str | None, outcomes_file: Path | None,
) -> None:
    """Run the study a study file describes, resuming it if it exists.

    Every `hpo run` on the same study and storage is a worker: start as many as you like,
    here or on other machines, with the same command. n_trials is the whole study's total.

    Example: hpo run studies/quickstart.yaml --n-trials 20 --workers 2
    """
    from hpo.report.summary import format_summary, ran_line
    from hpo.spec import load_spec
    from hpo.worker import runner

    spec = load_spec(spec_file)
    _quiet_optuna(ctx.obj["debug"])
    options = runner.RunOptions(storage, n_trials, timeout, quiet, worker_id, note, stage)
    if workers is None:
        workers = _chosen_workers(spec, n_trials)
    if spec.stages is not None:
        _run_staged(ctx, spec, spec_file, options, workers)
        return
    if workers > 1:
        from hpo.worker.workers import run_local_workers

        result = run_local_workers(spec, options, workers, ctx.obj["debug"])
    else:
        result = runner.run(spec, options)
    if outcomes_file is not None:
        with _writing(outcomes_file, "--outcomes-file"):
            outcomes_file.write_text(json.dumps(result.outcomes))
    if result.stopped_by is not None:
        click.echo(f"Stopped by {result.stopped_by.name}; the next `hpo run` resumes.", err=True)
    if result.summary is not None:
        click.echo(format_summary(result.summary))
    by = f" with {workers} workers" if workers > 1 else ""
    click.echo(ran_line(result.outcomes, by, result.seconds, result.storage_url))
    click.echo(f"See it: hpo status {spec_file}  |  hpo dashboard {spec_file}")
    ctx.exit(result.exit_code)


def _chosen_workers(spec: Any, n_trials: int | None) -> int:
    from hpo.worker.workers import default_workers

    workers = default_workers(spec, n_trials)
    if workers > 1:
        click.echo(f"hpo: {workers} workers, one per usable CPU, each training on one thread "
                   "(small models train faster so); --workers 1 runs one", err=True)
    return workers


def _run_staged(ctx: click.Context, spec: Any, spec_file: Path, options: Any,
                workers: int) -> None:
    from hpo.report.summary import format_summary, ran_line
    from hpo.wisdom.stages import run_staged

    results = run_staged(spec, options, workers, ctx.obj["debug"])
    for staged in results:
        click.echo(f"Stage {staged.stage} (study {staged.spec.name}):")
        if staged.result.summary is not None:
            click.echo(format_summary(staged.result.summary))
    last = results[-1].result if results else None
    if last is not None and last.stopped_by is not None:
        click.echo(f"Stopped by {last.stopped_by.name}; the next `hpo run` resumes.", err=True)
    seconds = sum(s.result.seconds for s in results)
    outcomes: Counter[str] = Counter()
    for staged in results:
        outcomes.update(staged.result.outcomes)
    where = last.storage_url if last is not None else "nowhere (nothing ran)"
    click.echo(ran_line(outcomes, f" in {len(results)} stages", seconds, where))
    click.echo(f"See it: hpo status {spec_file}  |  hpo dashboard {spec_file}")
    ctx.exit(last.exit_code if last is not None else 0)


@main.command()
@spec_argument
def validate(spec_file: Path) -> None:
    """Check a study file and print it with every default filled in.

    Imports the objective (or reads the data file) as `hpo run` would, without running it.

    Example: hpo validate studies/quickstart.yaml
    """
    import yaml

    from hpo.spec import load_spec
    from hpo.store.storage import mask_url
    from hpo.worker.objective import check_objective

    spec = load_spec(spec_file)
    check_objective(spec)
    data = spec.normalized()
    if data.get("storage"):
        data["storage"] = mask_url(data["storage"])
    click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


def _spec_of(spec_file: Path | None, storage: str | None, study_name: str | None,
             whole_storage: bool = False) -> Any:
    """The study file's spec, or None when --storage and --study name the study instead
    (or, for a command on the `whole_storage`, --storage alone)."""
    from hpo.spec import load_spec

    if spec_file is None and not (storage and (study_name or whole_storage)):
        raise click.UsageError("give a study file or --storage" if whole_storage else
                               "give a study file, or both --storage and --study")
    return load_spec(spec_file) if spec_file is not None else None


def _open_study(spec: Any, storage: str | None, study_name: str | None) -> Any:
    """The existing study (of a staged file: its latest stage started, unless named)."""
    from hpo.store.existing import existing_study

    study, stage = existing_study(spec, storage, study_name)
    if stage is not None:
        click.echo(f"Stage {stage.name}: study {study.study_name} (the latest stage started; "
                   "--study NAME picks another)", err=True)
    return study


study_options = [
    click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--storage", help="Storage URL (instead of a study file)."),
    click.option("--study", "study_name", help="Study name (with --storage)."),
]


def _with_study_options(function: Any) -> Any:
    for option in reversed(study_options):
        function = option(function)
    return function


@main.command()
@_with_study_options
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=0),
              help="How many best trials to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def status(spec_file: Path | None, storage: str | None, study_name: str | None, top: int,
           as_json: bool) -> None:
    """Show a study's trial counts by state and its best trials.

    Example: hpo status studies/quickstart.yaml --top 10
    """
    from hpo.report.edges import limits_for
    from hpo.report.summary import format_summary, format_table, summarize

    spec = _spec_of(spec_file, storage, study_name)
    if spec is not None and spec.stages is not None and study_name is None:
        _staged_status(spec, storage, top, as_json)
        return
    study = _open_study(spec, storage, study_name)
    summary = summarize(study, top=top, limits=limits_for(spec, study))
    if as_json:
        click.echo(jsonout.dumps(summary))
        return
    click.echo(format_summary(summary))
    table = format_table(summary)
    if table:
        click.echo("\n" + table)


def _staged_status(spec: Any, storage: str | None, top: int, as_json: bool) -> None:
    """Every stage of a staged study: its study's summary, or that it has not started."""
    from hpo.report.edges import limits_for
    from hpo.report.summary import format_summary, format_table, summarize
    from hpo.store.existing import stage_studies

    stages = []
    for stage, study in stage_studies(spec, storage):
        summary = (summarize(study, top=top, limits=limits_for(spec, study))
                   if study is not None else None)
        stages.append({"stage": stage.name, "n_trials": stage.n_trials,
                       "started": study is not None, **(summary or {})})
    if as_json:
        click.echo(jsonout.dumps({"stages": stages}))
        return
    for index, stage in enumerate(stages):
        title = (f"Stage {index + 1} of {len(stages)}, {stage['stage']} "
                 f"({stage['n_trials']} trials)")
        if not stage["started"]:
            click.echo(f"{title}: not started\n")
            continue
        click.echo(f"{title}:\n" + format_summary(stage))
        table = format_table(stage)
        click.echo(("\n" + table if table else "") + "\n")


@main.command()
@_with_study_options
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
def export(spec_file: Path | None, storage: str | None, study_name: str | None, fmt: str,
           out: Path | None) -> None:
    """Export every trial: number, state, value, params, user attrs, duration.

    Example: hpo export studies/quickstart.yaml --format csv --out trials.csv
    """
    from hpo.report.export import to_csv, to_json, trial_records

    if out is not None:
        _check_output(out)
    spec = _spec_of(spec_file, storage, study_name)
    records = trial_records(_open_study(spec, storage, study_name))
    text = to_csv(records) if fmt == "csv" else to_json(records)
    if out is None:
        click.echo(text, nl=False)
    else:
        with _writing(out):
            out.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {len(records)} trials to {out}", err=True)


@main.command()
@_with_study_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind (0 picks a free one).")
@click.option("--read-only", "readonly", is_flag=True,
              help="Refuse every request that would change the storage (403).")
@click.option("--allow-remote-writes", is_flag=True,
              help="Allow a non-loopback --host without --read-only.")
def dashboard(spec_file: Path | None, storage: str | None, study_name: str | None, host: str,
              port: int, readonly: bool, allow_remote_writes: bool) -> None:
    """Serve optuna-dashboard for a study's storage (Ctrl-C stops it).

    Example: hpo dashboard studies/quickstart.yaml --port 8080
    """
    from hpo.report import dashboard as board
    from hpo.store.existing import no_such_study
    from hpo.store.storage import mask_url, open_existing_storage

    board.check_binding(host, readonly, allow_remote_writes)
    spec = _spec_of(spec_file, storage, study_name, whole_storage=True)
    # Like status: a SQLite file that is not there is a typo, not a new empty database.
    opened, url = open_existing_storage(spec, storage)
    name = study_name or (spec.name if spec is not None and spec.stages is None else None)
    page = ""
    if name is not None:
        try:
            page = f"dashboard/studies/{opened.get_study_id_from_name(name)}"
        except KeyError as e:
            if study_name is not None:  # asked for by name: it must be there
                raise no_such_study(opened, url, name) from e
    app = board.make_app(opened, readonly)
    mode = " (read-only)" if readonly else ""

    def announce(bound_port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"Dashboard for {mask_url(url)} at http://{shown}:{bound_port}/{page}{mode}; "
                   "Ctrl-C stops it", err=True)

    try:
        board.serve(app, host, port, announce)
    except OSError as e:
        raise HpoError(f"cannot serve on {host}:{port}: {e.strerror}") from e
    except KeyboardInterrupt:
        pass


@main.command(name="report")
@_with_study_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="The HTML file to write.")
@click.option("--top", default=10, show_default=True, type=click.IntRange(min=0),
              help="How many best trials to list.")
@click.option("--png", is_flag=True,
              help="Also write each figure as a PNG beside the HTML (needs kaleido).")
# The old spelling of --png: `--format` picks one format elsewhere (export), not "also".
@click.option("--format", "fmt", type=click.Choice(["html", "png"]), hidden=True)
def report_command(spec_file: Path | None, storage: str | None, study_name: str | None,
                   out: Path, top: int, png: bool, fmt: str | None) -> None:
    """Write one self-contained HTML report of the study (works offline).

    Example: hpo report studies/quickstart.yaml --out report.html --top 20
    """
    from hpo.report.edges import limits_for
    from hpo.report.html_report import write_report

    if fmt == "png":
        click.echo("hpo: --format png is now --png (the HTML is always written)", err=True)
    png = png or fmt == "png"
    _check_output(out, beside=png)
    spec = _spec_of(spec_file, storage, study_name)
    study = _open_study(spec, storage, study_name)
    with _writing(out):
        written = write_report(study, out, png=png, top=top, limits=limits_for(spec, study))
    for path in written:
        click.echo(f"Wrote {path}")


param_option = click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE",
    help="Train with this value instead of the file's fixed one (repeatable), e.g. "
         "--param optimizer=sgd.")


@main.command()
@spec_argument
@param_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_context
def check(ctx: click.Context, spec_file: Path, params: tuple[str, ...], as_json: bool) -> None:
    """Babysit the built-in trainer's setup before a search (seconds, no study written).

    Checks the loss before any update (about ln C), that 20 examples can be learned by heart,
    how the loss moves across the lr range, and that the inputs matter. Exits 1 when a check
    fails, 0 otherwise (warnings included).

    Example: hpo check studies/quickstart.yaml
    """
    from hpo.spec import load_spec
    from hpo.wisdom import check as checks
    from hpo.wisdom.setup import parse_overrides

    spec = load_spec(spec_file)
    results, setup_line = checks.run_checks(spec, parse_overrides(params))
    if as_json:
        click.echo(jsonout.dumps({"checks": [c.as_dict() for c in results]}))
    else:
        click.echo(checks.format_checks(results, setup_line))
    ctx.exit(checks.exit_code(results))


@main.command(name="lr-find")
@spec_argument
@param_option
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Range tests to run, each from its own initialization and batch order.")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(10, 10000),
              help="Steps of the exponential ramp.")
@click.option("--start", type=click.FloatRange(min=0, min_open=True),
              help="First lr [default: a decade below search_space.lr, else 1e-7].")
@click.option("--end", type=click.FloatRange(min=0, min_open=True),
              help="Last lr [default: a decade above search_space.lr, else 10].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the loss-vs-lr plot (.html, or .png with kaleido).")
def lr_find(spec_file: Path, params: tuple[str, ...], seeds: int, steps: int,
            start: float | None, end: float | None, as_json: bool, out: Path | None) -> None:
    """Find the learning-rate range to search: an LR range test over a few seeds.

    Example: hpo lr-find studies/quickstart.yaml --out lr.html
    """
    from hpo.spec import load_spec
    from hpo.wisdom import lr_find as finder
    from hpo.wisdom.setup import parse_overrides

    if out is not None:
        finder.plot_format(out)
        _check_output(out)
    spec = load_spec(spec_file)
    found = finder.find_lr(spec, parse_overrides(params), seeds, steps, start, end)
    if out is not None:
        with _writing(out):
            finder.write_plot(found, out)
    if as_json:
        click.echo(jsonout.dumps(found.as_dict()))
    else:
        click.echo(finder.format_result(found))
    if out is not None:
        click.echo(f"Wrote {out}", err=True)


@main.command()
@spec_argument
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The next stage's study file to write.")
@click.option("--name", help="The new study's name [default: NAME-stage2, -stage3, ...].")
@click.option("--storage", help="Storage URL of the study (as given to `hpo run`).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--dry-run", is_flag=True,
              help="Print the next file (and what it would carry over) without writing it.")
def refine(spec_file: Path, out: Path | None, name: str | None, storage: str | None,
           force: bool, dry_run: bool) -> None:
    """Write the next, narrower stage of a finished search as a new study file.

    Numeric ranges shrink to the box the top trials fill, plus a margin (the old edge is kept
    where the best lies near it; never fixed); a categorical choice goes only after enough
    trials and none among the top. The new study starts with every finished trial inside
    the new space, carried over as evidence (not counted against n_trials). Each change is
    commented.

    Example: hpo refine studies/quickstart.yaml --out studies/quickstart-stage2.yaml
    """
    import os

    import yaml

    from hpo.spec import load_spec, parse_spec
    from hpo.store.carry import carriable
    from hpo.store.existing import load_existing_study
    from hpo.store.storage import STORAGE_ENV
    from hpo.wisdom import refine as refiner

    spec = load_spec(spec_file)
    if spec.stages is not None:
        raise HpoError(f"{spec_file}: stages: a staged study refines itself from stage to "
                       "stage; refine one stage's study with --storage URL and a plain file")
    if out is None and not dry_run:
        raise click.UsageError("give --out FILE to write the next stage's file, or --dry-run "
                               "to print it")
    out = out or spec_file.with_name(f"{spec_file.stem}-next.yaml")
    if out.exists() and not force and not dry_run:
        raise HpoError(f"--out {out}: the file exists; choose another or add --force")
    if not dry_run:
        _check_output(out)
    study = load_existing_study(spec, storage)
    refinement = refiner.refine_space(spec, study)
    new_name = name or refiner.next_name(spec.name)
    if new_name == spec.name:
        raise HpoError(f"--name {new_name!r}: the next stage needs its own study name")
    storage_given = bool(storage or os.environ.get(STORAGE_ENV))
    text = refiner.refined_file(spec, refinement, new_name, out, storage_given)
    refined = parse_spec(yaml.safe_load(text), out)  # it must validate before it is written
    for comment in refinement.comments.values():
        click.echo(f"  {comment}", err=dry_run)
    if refined.carry_from:
        carried, finished = carriable(study, refined.search_space)
        click.echo(f"Carries over {len(carried)} of the {finished} finished trials of "
                   f"{spec.name!r} (those inside the new space) as evidence for the sampler; "
                   "they do not count against n_trials", err=dry_run)
    if dry_run:
        click.echo(text, nl=False)
        return
    with _writing(out):
        out.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {out} (study {new_name!r}); run it: hpo run {out}")


@main.command()
@click.argument("path", required=False, default="study.yaml",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--objective", metavar="FILE.py:FUNCTION",
              help="Search your own function instead of the built-in trainer; a stub FILE.py "
                   "is written beside the study file when there is none.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init(path: Path, objective: str | None, force: bool) -> None:
    """Write a commented starter study file that runs as written [default: study.yaml].

    Without --objective it searches the built-in trainer on the digits dataset.

    Example: hpo init my-study.yaml --objective train.py:objective
    """
    from hpo.spec import load_spec
    from hpo.spec.starter import write_starter

    with _writing(path, "PATH"):
        written = write_starter(path, objective, force)
    spec = load_spec(path)  # what init writes must validate
    for file in written:
        click.echo(f"Wrote {file}")
    if spec.objective.trainer:
        click.echo(f"Next: hpo check {path}   (seconds), then: hpo run {path}")
    else:
        click.echo(f"Next: edit {spec.objective.callable.split(':')[0]}, then: hpo run {path}")


@main.command(name="list")
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--storage", help="Storage URL (instead of a study file's).")
@click.option("--json", "as_json", is_flag=True, help="Print the studies as JSON.")
def list_command(spec_file: Path | None, storage: str | None, as_json: bool) -> None:
    """List the studies in a storage: direction, trials by state, best value, last activity.

    Example: hpo list studies/quickstart.yaml   or   hpo list --storage sqlite:///hpo.db
    """
    from hpo.report import catalog
    from hpo.store.storage import dispose, open_existing_storage

    spec = _spec_of(spec_file, storage, None, whole_storage=True)
    opened, _ = open_existing_storage(spec, storage)
    try:
        rows = catalog.study_rows(opened)
    finally:
        dispose(opened)
    click.echo(jsonout.dumps({"studies": rows}) if as_json else catalog.format_rows(rows))


@main.command()
@_with_study_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="yaml: the params, ready to paste; json: "
              '{"number", "value", "params"}.')
def best(spec_file: Path | None, storage: str | None, study_name: str | None, fmt: str) -> None:
    """Print the best trial's value and params (YAML ready to paste as fixed values).

    Example: hpo best studies/quickstart.yaml > best.yaml
    """
    import yaml

    from hpo.report.trials import metric_name, ranked

    spec = _spec_of(spec_file, storage, study_name)
    study = _open_study(spec, storage, study_name)
    best_first = ranked(study, study.get_trials(deepcopy=False))
    if not best_first:
        raise HpoError(f"study {study.study_name!r} has no completed trial yet; `hpo status` "
                       "shows its trials")
    trial = best_first[0]
    if fmt == "json":
        click.echo(jsonout.dumps({"number": trial.number, "value": trial.value,
                                  "params": trial.params}))
        return
    click.echo(f"# best {metric_name(study)} {trial.value:.6g}: trial {trial.number} "
               f"of study {study.study_name}")
    click.echo(yaml.safe_dump(trial.params, sort_keys=False), nl=False)


@main.command(name="enqueue")
@spec_argument
@click.argument("values", nargs=-1, metavar="[NAME=VALUE]...")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A YAML or JSON file of a configuration (or a list of them); `hpo best` "
                   "writes one.")
@click.option("--storage", help="Storage URL; overrides $HPO_STORAGE and the file's storage.")
def enqueue_command(spec_file: Path, values: tuple[str, ...], from_file: Path | None,
                    storage: str | None) -> None:
    """Queue configurations for the next run to evaluate first (they count against n_trials).

    Each value is checked against the search space; entries left out are the sampler's.

    Example: hpo enqueue studies/quickstart.yaml lr=0.003 optimizer=adam
    """
    from hpo.spec import load_spec, parse_assignments
    from hpo.store.storage import mask_url
    from hpo.worker import enqueue as queue

    spec = load_spec(spec_file)
    if spec.stages is not None:
        raise HpoError(f"{spec_file}: stages: each stage enqueues the best of the one before; "
                       "to run a configuration first, add it to `enqueue:` in the file")
    if spec.sampler.type == "grid":
        raise HpoError(f"{spec_file}: sampler: the grid sampler runs every point of the grid "
                       "already; use sampler type tpe or random to enqueue configurations")
    configurations = [parse_assignments(values, "", "lr=0.01")] if values else []
    if from_file is not None:
        configurations += queue.read_configurations(from_file)
    if not configurations:
        raise click.UsageError("give NAME=VALUE pairs or --from FILE")
    for i, params in enumerate(configurations):
        where = "enqueue" if values and i == 0 else f"--from {from_file}"
        queue.check_configuration(spec, params, where)
    url = queue.enqueue(spec, configurations, storage)
    left_out = queue.left_to_sampler(spec, configurations)
    one = len(configurations) == 1
    click.echo(f"Queued {len(configurations)} configuration{'' if one else 's'} in study "
               f"{spec.name!r} ({mask_url(url)}); the next `hpo run` runs "
               f"{'it' if one else 'them'} first")
    if left_out:
        click.echo(f"The sampler picks what they leave out: {', '.join(left_out)}")


@main.command()
@_with_study_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(spec_file: Path | None, storage: str | None, study_name: str | None,
           yes: bool) -> None:
    """Delete a study and all its trials (every stage's, for a staged file); asks first.

    Example: hpo delete studies/quickstart.yaml
    """
    from hpo.report import catalog
    from hpo.report.summary import format_counts
    from hpo.report.trials import state_counts
    from hpo.store.storage import mask_url, resolve_storage_url

    spec = _spec_of(spec_file, storage, study_name)
    if spec is not None and spec.stages is not None and study_name is None:
        from hpo.store.existing import started_stage_studies

        studies = [study for _, study in started_stage_studies(spec, storage)]
    else:
        studies = [_open_study(spec, storage, study_name)]
    where = mask_url(resolve_storage_url(spec, storage) if spec is not None else storage)
    for study in studies:
        counts = format_counts(state_counts(study.get_trials(deepcopy=False)))
        click.echo(f"Study {study.study_name!r} in {where}: {counts}")
    if not yes:
        which = "these studies and their" if len(studies) > 1 else "this study and its"
        click.confirm(f"Delete {which} trials? This cannot be undone", abort=True)
    catalog.delete_studies(studies)
    click.echo(f"Deleted {', '.join(repr(s.study_name) for s in studies)}")


def entry() -> None:
    """The `hpo` command: click's `main`, then, once torch is loaded, a quick exit
    (`hpo.quick_exit`: an interpreter that imported torch takes seconds to tear down)."""
    try:
        main()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if "torch" not in sys.modules:
        sys.exit(code)  # nothing slow to skip
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)  # sys.exit("message") prints it and exits 1
        code = 1
    from hpo.quick_exit import quick_exit

    quick_exit(code or 0)
