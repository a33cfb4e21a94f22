"""Local workers: `hpo run --workers N` as N worker processes with one progress view.

Each worker is a plain `hpo run` process; they share nothing but the database, exactly like
workers on other machines. The parent prepares the study once (so a refused spec is refused
once), splits the cores between the workers, shows the study-wide progress, forwards Ctrl-C
and SIGTERM, and never leaves a child behind: if it fails, or its children do not stop in
time after a signal, it terminates them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from hpo import budget, optuna_compat
from hpo.errors import HpoError
from hpo.note import write_study_note
from hpo.runner import RunOptions, RunResult, progress_bar
from hpo.signals import EXIT_CODES
from hpo.storage import STORAGE_ENV, mask_url
from hpo.study import opened_study
from hpo.training import LOCAL_WORKERS_ENV

if TYPE_CHECKING:
    from hpo.spec import StudySpec

POLL_S = 0.5
# After a forwarded signal a worker stops within a second; one that has not after this long
# is terminated, then killed.
STOP_GRACE_S = 30.0


def worker_label(worker_id: str, index: int) -> str:
    """Child `index`'s id: `--worker-id` (if any) and the index, so labels stay distinct."""
    return f"{worker_id}.{index}" if worker_id else str(index)


def worker_command(spec: StudySpec, options: RunOptions, index: int, debug: bool,
                   outcomes_file: Path) -> list[str]:
    command = [sys.executable, "-m", "hpo"] + (["--debug"] if debug else [])
    command += ["run", str(spec.source), "-q", "--no-note",
                "--worker-id", worker_label(options.worker_id, index),
                "--outcomes-file", str(outcomes_file)]
    if options.n_trials:
        command += ["--n-trials", str(options.n_trials)]
    if options.timeout:
        command += ["--timeout", str(options.timeout)]
    if options.stage:
        command += ["--stage", options.stage]
    return command


def _stop(children: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM the children still running, wait `grace_s`, then SIGKILL the rest."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_local_workers(
    spec: StudySpec, options: RunOptions, workers: int, debug: bool = False
) -> RunResult:
    """Run the study with `workers` local worker processes; returns when all have stopped."""
    from hpo.objective import check_objective

    optuna_compat.check_versions()
    check_objective(spec)  # a bad objective or data file is one error here, not N
    with opened_study(spec, options.storage) as (study, url):
        return _supervise(spec, options, workers, debug, url, study)


def _read_outcomes(files: list[Path], folder: Path) -> dict[str, int]:
    """The children's outcomes, summed (a child killed before it wrote its file adds none)."""
    total: Counter[str] = Counter()
    for path in files:
        if path.exists():
            total.update(json.loads(path.read_text()))
    shutil.rmtree(folder, ignore_errors=True)
    return dict(total)


def _supervise(spec: StudySpec, options: RunOptions, workers: int, debug: bool, url: str,
               study: object) -> RunResult:
    # The URL travels in the environment, not on command lines other users can list.
    env = {**os.environ, STORAGE_ENV: url, LOCAL_WORKERS_ENV: str(workers)}
    started = time.perf_counter()
    children: list[subprocess.Popen] = []
    received: list[signal.Signals] = []
    signalled_at: list[float] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))
        signalled_at.append(time.monotonic())
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in EXIT_CODES}
    budget_total = options.n_trials or spec.n_trials
    finished_before = budget.finished_count(budget.count_by_state(study))
    # Each child writes how its trials ended here, so "Ran N trials" counts what these
    # workers ran, as it does for one worker, whatever other machines do meanwhile.
    outcomes_dir = Path(tempfile.mkdtemp(prefix="hpo-workers-"))
    outcome_files = [outcomes_dir / f"{i}.json" for i in range(workers)]
    try:
        children.extend(
            subprocess.Popen(worker_command(spec, options, i, debug, outcome_files[i]),
                             env=env, stdout=subprocess.DEVNULL)
            for i in range(workers)
        )
        with progress_bar(spec, budget_total, finished_before, options.quiet) as progress:
            while any(child.poll() is None for child in children):
                if signalled_at and time.monotonic() - signalled_at[0] > STOP_GRACE_S:
                    break  # they had their chance to stop cleanly
                counts = budget.count_by_state(study)
                progress.update(budget.finished_count(counts) - progress.n)
                time.sleep(POLL_S)
            counts = budget.count_by_state(study)
            progress.update(budget.finished_count(counts) - progress.n)
    finally:
        _stop(children, STOP_GRACE_S if not received else 5.0)
        for s, handler in previous.items():
            signal.signal(s, handler)
        outcomes = _read_outcomes(outcome_files, outcomes_dir)
    codes = [child.returncode for child in children]
    failed = [c for c in codes if c not in (0, *EXIT_CODES.values())]
    if failed and not received:
        raise HpoError(f"{len(failed)} of {workers} workers failed (exit codes {codes}); "
                       f"their errors are above; the study in {mask_url(url)} keeps every "
                       "finished trial")
    from hpo import report
    from hpo.wisdom.edges import limits_for

    summary = report.summarize(study, limits=limits_for(spec))
    write_study_note(study, spec, url, summary)
    return RunResult(study=study, storage_url=mask_url(url),
                     outcomes=outcomes,
                     seconds=time.perf_counter() - started, summary=summary,
                     stopped_by=received[0] if received else None)
