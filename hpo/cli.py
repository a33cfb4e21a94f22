"""The `hpo` command: each subcommand parses, calls one library function, prints."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from hpo.errors import HpoError


class _Cli(click.Group):
    """Turns HpoError into one `Error: ...` line and exit 1; --debug shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HpoError as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:  # Ctrl-C before a command could install its own handling
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo("Stopped by SIGINT.", err=True)
            ctx.exit(130)


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

    Example: hpo run studies/quickstart.yaml
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
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes to start on this machine.")
@click.option("--worker-id", envvar="HPO_WORKER_ID", default="",
              help="A label recorded on this worker's trials (user attr worker_id); with "
                   "--workers N the children are ID.0 .. ID.N-1. [env: HPO_WORKER_ID]")
# `--workers N` starts its workers with --no-note: the parent writes the note once, at the end.
@click.option("--note/--no-note", default=True, hidden=True)
@click.pass_context
def run(
    ctx: click.Context, spec_file: Path, storage: str | None, n_trials: int | None,
    timeout: float | None, quiet: bool, workers: int, worker_id: str, note: bool,
) -> None:
    """Run the study a study file describes, resuming it if it exists.

    Every `hpo run` on the same study and storage is a worker: start as many as you like,
    here or on other machines, with the same command. n_trials is the whole study's total.

    Example: hpo run studies/quickstart.yaml --n-trials 20 --workers 2
    """
    from hpo import report, runner
    from hpo.spec import load_spec

    spec = load_spec(spec_file)
    _quiet_optuna(ctx.obj["debug"])
    options = runner.RunOptions(storage, n_trials, timeout, quiet, worker_id, note)
    if workers > 1:
        from hpo.workers import run_local_workers

        result = run_local_workers(spec, options, workers, ctx.obj["debug"])
    else:
        result = runner.run(spec, options)
    if result.stopped_by is not None:
        click.echo(f"Stopped by {result.stopped_by.name}; the next `hpo run` resumes.", err=True)
    if result.summary is not None:
        click.echo(report.format_summary(result.summary))
    by = f" with {workers} workers" if workers > 1 else ""
    click.echo(f"Ran {result.trials_run} trials{by} in {result.seconds:.1f} s; "
               f"stored in {result.storage_url}")
    click.echo(f"See it: hpo status {spec_file}  |  hpo dashboard {spec_file}")
    ctx.exit(result.exit_code)


@main.command()
@spec_argument
def validate(spec_file: Path) -> None:
    """Check a study file and print it with every default filled in.

    Example: hpo validate studies/quickstart.yaml
    """
    import yaml

    from hpo.spec import load_spec
    from hpo.storage import mask_url

    spec = load_spec(spec_file)
    data = spec.normalized()
    if data.get("storage"):
        data["storage"] = mask_url(data["storage"])
    click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


def _open_study(spec_file: Path | None, storage: str | None, study_name: str | None) -> Any:
    from hpo.spec import load_spec
    from hpo.storage import load_existing_study

    if spec_file is None and not (storage and study_name):
        raise click.UsageError("give a study file, or both --storage and --study")
    spec = load_spec(spec_file) if spec_file is not None else None
    return load_existing_study(spec, storage, study_name)


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
    from hpo import report

    summary = report.summarize(_open_study(spec_file, storage, study_name), top=top)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(report.format_summary(summary))
    table = report.format_table(summary)
    if table:
        click.echo("\n" + table)


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
    from hpo import report

    records = report.trial_records(_open_study(spec_file, storage, study_name))
    text = report.to_csv(records) if fmt == "csv" else report.to_json(records)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
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
    from hpo import dashboard as board
    from hpo.storage import mask_url, resolve_storage_url

    board.check_binding(host, readonly, allow_remote_writes)
    if spec_file is not None:
        from hpo.spec import load_spec

        url = resolve_storage_url(load_spec(spec_file), storage)
    elif storage:
        url = storage
    else:
        raise click.UsageError("give a study file or --storage")
    app = board.make_app(url, readonly)
    mode = " (read-only)" if readonly else ""

    def announce(bound_port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"Dashboard for {mask_url(url)} at http://{shown}:{bound_port}/{mode}; "
                   "Ctrl-C stops it", err=True)

    try:
        board.serve(app, host, port, announce)
    except OSError as e:
        raise HpoError(f"cannot serve on {host}:{port}: {e.strerror}") from None
    except KeyboardInterrupt:
        pass


@main.command(name="report")
@_with_study_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="The HTML file to write.")
@click.option("--format", "fmt", type=click.Choice(["html", "png"]), default="html",
              show_default=True, help="png also writes each figure as an image.")
def report_command(spec_file: Path | None, storage: str | None, study_name: str | None,
                   out: Path, fmt: str) -> None:
    """Write one self-contained HTML report of the study (works offline).

    Example: hpo report studies/quickstart.yaml --out report.html
    """
    from hpo.html_report import write_report

    written = write_report(_open_study(spec_file, storage, study_name), out, png=fmt == "png")
    for path in written:
        click.echo(f"Wrote {path}")
