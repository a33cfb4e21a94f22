"""Local workers: `hpo run --workers N` as N worker processes with one progress view.

The workers share nothing but the database, exactly like workers on other machines. The
parent prepares the study once (so a refused spec is refused once), splits the cores between
the workers, shows the study-wide progress, forwards Ctrl-C and SIGTERM, and never leaves a
child behind: if it fails, or its children do not stop in time after a signal, it terminates
them.

For the built-in trainer the parent imports torch, loads the data and warms up once, then
forks the workers, so startup is paid once, not N times. A user's objective may hold
anything (threads, a GPU context, open sockets) that does not survive a fork: its workers
are fresh `hpo run` processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.report.note import write_study_note
from hpo.signals import EXIT_CODES
from hpo.store import budget, optuna_compat
from hpo.store.carry import carried_count
from hpo.store.storage import STORAGE_ENV, mask_url
from hpo.training import LOCAL_WORKERS_ENV
from hpo.worker.objective import Objective, build_objective, check_objective
from hpo.worker.opening import opened_study
from hpo.worker.runner import RunOptions, RunResult, progress_bar
from hpo.worker.runner import run as run_one_worker

if TYPE_CHECKING:
    from hpo.spec import StudySpec

POLL_S = 0.5  # the progress bar's refresh: a query of the study
EXIT_POLL_S = 0.05  # the command ends this soon after its last worker
# After a forwarded signal a worker stops within a second; one that has not after this long
# is terminated, then killed.
STOP_GRACE_S = 30.0


# `hpo run` starts one worker per usable CPU by itself only when each has this many trials
# of the budget to run: fewer, and startup and the last trials' idle tail eat the gain.
TRIALS_PER_WORKER = 4


def default_workers(spec: StudySpec, n_trials: int | None) -> int:
    """The local workers `hpo run` starts when not told: one per usable CPU, each training on
    one thread, for the built-in trainer on the CPU with enough trials; else one.

    Small models train faster as N one-thread workers than as one N-thread worker (2.0x on
    2 cores for the quickstart's MLP): per-operation overhead, not arithmetic, bounds a
    step, and threads share the arithmetic only.
    """
    if not spec.objective.trainer or spec.stages is not None:
        return 1
    train = spec.objective.train
    if train.threads is not None or train.device == "cuda":
        return 1
    if train.device == "auto" and _cuda_present():
        return 1
    from hpo.training.loop import usable_cpus

    cpus = usable_cpus()
    if cpus < 2 or (n_trials or spec.n_trials) < TRIALS_PER_WORKER * cpus:
        return 1
    return cpus


def _cuda_present() -> bool:
    import torch

    if torch.version.cuda is None and torch.version.hip is None:
        return False  # a CPU build
    # NVML's count does not initialize CUDA, which the forked workers could not use after it.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return torch.cuda.is_available()


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


class ForkedWorker:
    """A worker forked from this process, with the few `Popen` methods the launcher uses."""

    def __init__(self, target: Any, args: tuple) -> None:
        self._process = multiprocessing.get_context("fork").Process(target=target, args=args)
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode  # -N if signal N ended it, as Popen says

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
        return self.returncode


def _forked_worker(spec: StudySpec, options: RunOptions, objective: Objective,
                   storage: Any, env: dict, debug: bool, outcomes_file: Path) -> None:
    """A forked child's whole life: run the study as one `hpo run` worker would, in the
    parent's storage (opened, its schema checked), on connections of its own."""
    # The parent's forwarding handler is not this process's; the worker installs its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.update(env)
    backend = optuna_compat.rdb_backend(storage)
    if backend is not None:
        # SQLAlchemy's rule for a forked process: forget the pooled connections, unclosed
        # (closing them would close the parent's), and open new ones.
        backend.engine.dispose(close=False)
    try:
        result = run_one_worker(spec, options, objective, storage)
    except HpoError as e:
        if debug:
            raise
        for line in str(e).splitlines():
            print(f"Error: {line}", file=sys.stderr, flush=True)
        sys.exit(1)
    outcomes_file.write_text(json.dumps(result.outcomes))
    sys.exit(result.exit_code)


def _sleep_while_any_runs(children: list[Any], seconds: float) -> None:
    """Sleep `seconds`, or until the last child has exited, whichever is first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(child.poll() is None for child in children):
        time.sleep(EXIT_POLL_S)


def _stop(children: list[Any], grace_s: float) -> None:
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
    optuna_compat.check_versions()
    # A bad objective or data file is one error here, not N.
    if spec.objective.trainer:
        objective: Objective | None = build_objective(spec)  # the forked workers share it
    else:
        check_objective(spec)
        objective = None
    with opened_study(spec, options.storage) as (study, url):
        return _supervise(spec, options, workers, debug, url, study, objective)


def _read_outcomes(files: list[Path], folder: Path) -> dict[str, int]:
    """The children's outcomes, summed (a child killed before it wrote its file adds none)."""
    total: Counter[str] = Counter()
    for path in files:
        if path.exists():
            total.update(json.loads(path.read_text()))
    shutil.rmtree(folder, ignore_errors=True)
    return dict(total)


def _start(spec: StudySpec, options: RunOptions, index: int, debug: bool, env: dict,
           outcomes_file: Path, objective: Objective | None, study: Any) -> Any:
    """Worker `index`: forked when the objective was built here, else a new process."""
    if objective is None:
        return subprocess.Popen(worker_command(spec, options, index, debug, outcomes_file),
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    own = replace(options, quiet=True, write_note=False,
                  worker_id=worker_label(options.worker_id, index))
    storage = optuna_compat.study_storage(study)
    return ForkedWorker(_forked_worker,
                        (spec, own, objective, storage, env, debug, outcomes_file))


def _supervise(spec: StudySpec, options: RunOptions, workers: int, debug: bool, url: str,
               study: object, objective: Objective | None) -> RunResult:
    # The URL travels in the environment, not on command lines other users can list.
    env = {STORAGE_ENV: url, LOCAL_WORKERS_ENV: str(workers)}
    started = time.perf_counter()
    children: list[Any] = []
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
    carried = carried_count(study)
    finished_before = budget.finished_count(budget.count_by_state(study), carried)
    # Each child writes how its trials ended here, so "Ran N trials" counts what these
    # workers ran, as it does for one worker, whatever other machines do meanwhile.
    outcomes_dir = Path(tempfile.mkdtemp(prefix="hpo-workers-"))
    outcome_files = [outcomes_dir / f"{i}.json" for i in range(workers)]
    try:
        children.extend(_start(spec, options, i, debug, env, outcome_files[i], objective,
                               study) for i in range(workers))
        with progress_bar(spec, budget_total, finished_before, options.quiet) as progress:
            while any(child.poll() is None for child in children):
                if signalled_at and time.monotonic() - signalled_at[0] > STOP_GRACE_S:
                    break  # they had their chance to stop cleanly
                counts = budget.count_by_state(study)
                progress.update(budget.finished_count(counts, carried) - progress.n)
                _sleep_while_any_runs(children, POLL_S)
            counts = budget.count_by_state(study)
            progress.update(budget.finished_count(counts, carried) - progress.n)
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
    from hpo.report.edges import limits_for
    from hpo.report.summary import summarize

    summary = summarize(study, limits=limits_for(spec))
    write_study_note(study, spec, url, summary)
    return RunResult(study=study, storage_url=mask_url(url),
                     outcomes=outcomes,
                     seconds=time.perf_counter() - started, summary=summary,
                     stopped_by=received[0] if received else None)
