"""Local workers: `hpo run --workers N` as N worker processes with one progress view.

Each worker is a plain `hpo run` process with its own worker id; they share nothing but the
database, exactly like workers on other machines. The parent prepares the study once (so a
refused spec is refused once), splits the cores between the workers, shows the study-wide
progress, and forwards Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from hpo.errors import HpoError
from hpo.runner import (
    SIGNAL_EXIT_CODES,
    RunOptions,
    RunResult,
    create_or_load_study,
    progress_bar,
    write_study_note,
)
from hpo.storage import (
    STORAGE_ENV,
    count_by_state,
    finished_count,
    mask_url,
    open_storage,
    resolve_storage_url,
)
from hpo.training import LOCAL_WORKERS_ENV

if TYPE_CHECKING:
    from hpo.spec import StudySpec

POLL_S = 0.5


def worker_command(spec: StudySpec, options: RunOptions, index: int, debug: bool) -> list[str]:
    command = [sys.executable, "-m", "hpo"] + (["--debug"] if debug else [])
    command += ["run", str(spec.source), "-q", "--no-note", "--worker-id", str(index)]
    if options.n_trials:
        command += ["--n-trials", str(options.n_trials)]
    if options.timeout:
        command += ["--timeout", str(options.timeout)]
    return command


def run_local_workers(
    spec: StudySpec, options: RunOptions, workers: int, debug: bool = False
) -> RunResult:
    """Run the study with `workers` local worker processes; returns when all have stopped."""
    from hpo.objective import check_objective

    check_objective(spec)  # a bad objective or data file is one error here, not N
    url = resolve_storage_url(spec, options.storage)
    study = create_or_load_study(spec, open_storage(url, spec.heartbeat), url)
    # The URL travels in the environment, not on command lines other users can list.
    env = {**os.environ, STORAGE_ENV: url, LOCAL_WORKERS_ENV: str(workers)}
    started = time.perf_counter()
    children = [
        subprocess.Popen(worker_command(spec, options, i, debug), env=env,
                         stdout=subprocess.DEVNULL)
        for i in range(workers)
    ]
    received: list[signal.Signals] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in SIGNAL_EXIT_CODES}
    budget = options.n_trials or spec.n_trials
    counts = count_by_state(study)
    finished_before = finished_count(counts)
    progress = progress_bar(spec, budget, finished_before, options.quiet)
    try:
        with progress:
            while True:
                counts = count_by_state(study)
                progress.update(finished_count(counts) - progress.n)
                if all(child.poll() is not None for child in children):
                    break
                time.sleep(POLL_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    codes = [child.returncode for child in children]
    failed = [c for c in codes if c not in (0, *SIGNAL_EXIT_CODES.values())]
    if failed and not received:
        raise HpoError(f"{len(failed)} of {workers} workers failed (exit codes {codes}); "
                       f"their errors are above; the study in {mask_url(url)} keeps every "
                       "finished trial")
    from hpo import report

    summary = report.summarize(study)
    write_study_note(study, spec, url, summary)
    counts = count_by_state(study)
    return RunResult(study=study, storage_url=mask_url(url),
                     trials_run=finished_count(counts) - finished_before,
                     seconds=time.perf_counter() - started, summary=summary,
                     stopped_by=received[0] if received else None)
