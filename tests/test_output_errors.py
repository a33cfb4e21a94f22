"""Output mistakes from the user's side: a missing folder is one line before any work, a full
disk one line, a closed standard output a quiet exit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hpo.cli import CLOSED_OUTPUT_EXIT
from tests.conftest import HPO, cli, study_yaml, write_study

FULL = Path("/dev/full")  # Linux: every write to it fails with ENOSPC
needs_full = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (Linux)")
FULL_DISK = "no space left on device; free some space, or write elsewhere"


def hpo(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([HPO, *map(str, args)], capture_output=True, text=True, timeout=120,
                          **kwargs)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A study file whose study has run (3 trials)."""
    path = write_study(tmp_path_factory.mktemp("finished"), study_yaml(n_trials=3))
    assert cli("run", path, "-q").exit_code == 0
    return path


@pytest.mark.parametrize("command", [
    ["export", "--out", "{missing}/trials.csv"],
    ["report", "--out", "{missing}/report.html"],
    ["refine", "--out", "{missing}/next.yaml"],
    ["lr-find", "--out", "{missing}/lr.html"],
])
def test_missing_output_folder_is_named_before_any_work(tmp_path, command):
    # A study that never ran: any work (opening the study, lr-find's range test, which needs
    # the built-in trainer) would fail with another error, or write the database.
    path = write_study(tmp_path, study_yaml())
    missing = tmp_path / "no" / "such"
    name, *options = command
    done = hpo(name, path, *(o.format(missing=missing) for o in options))
    assert done.returncode == 1
    out = Path(options[1].format(missing=missing))
    assert done.stderr == (f"Error: --out {out}: the folder {missing} does not exist; create "
                           f"it (mkdir -p {missing}) or write elsewhere\n")
    assert not (tmp_path / "quad.db").exists()
    assert not missing.parent.exists()


def test_output_folder_that_is_a_file(finished):
    out = finished / "trials.csv"  # the study file as a folder
    result = cli("export", finished, "--out", out)
    assert result.exit_code == 1
    assert result.output == f"Error: --out {out}: {finished} is not a folder; write elsewhere\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder")
def test_output_folder_without_write_permission(finished, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("report", finished, "--out", locked / "report.html")
    assert result.exit_code == 1
    assert result.output == (f"Error: --out {locked / 'report.html'}: cannot write in the "
                             f"folder {locked} (permission denied); write elsewhere\n")


@needs_full
@pytest.mark.parametrize("command", [["export", "--format", "json"], ["report"]])
def test_full_disk_is_one_line(finished, command):
    done = hpo(command[0], finished, *command[1:], "--out", FULL)
    assert done.returncode == 1
    assert done.stderr == f"Error: --out {FULL}: cannot write: {FULL_DISK}\n"


@needs_full
def test_full_disk_on_standard_output_is_one_line(finished):
    with FULL.open("w") as full:
        done = subprocess.run([HPO, "export", str(finished)], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == f"Error: cannot write standard output: {FULL_DISK}\n"


@needs_full
def test_debug_shows_the_traceback_of_a_write_error(finished):
    done = hpo("--debug", "export", finished, "--out", FULL)
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "OSError: [Errno 28]" in done.stderr


@pytest.mark.parametrize("command", [
    ["status"], ["status", "--json"], ["export", "--format", "json"], ["best"], ["--help"],
])
def test_closed_standard_output_exits_quietly(finished, command):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before hpo writes a byte (`| head -0`)
    args = [*command[:1], str(finished), *command[1:]] if command != ["--help"] else command
    try:
        done = subprocess.run([HPO, *args], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write)
    assert done.stderr == ""  # no traceback, no "Exception ignored"
    assert done.returncode == CLOSED_OUTPUT_EXIT


def test_closed_standard_output_after_a_run_keeps_its_trials(tmp_path):
    path = write_study(tmp_path, study_yaml(n_trials=2))
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([HPO, "run", str(path), "-q"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == CLOSED_OUTPUT_EXIT
    assert cli("status", path).output.startswith("Study 'quad': 2 complete")
