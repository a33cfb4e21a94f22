"""Errors keep their cause: one line without --debug, the whole chain with it; and the quick
exit after torch still runs atexit handlers and flushes what was printed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from hpo.cli import main
from hpo.errors import SpecError


def test_a_yaml_mistake_is_one_line_and_its_cause_is_kept_under_debug(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("name: quad\nsearch_space: {x: [1, 2\n")

    plain = CliRunner().invoke(main, ["run", str(path)])
    assert plain.exit_code == 1
    assert plain.output.startswith(f"Error: {path}: YAML syntax error")
    assert "Traceback" not in plain.output

    debug = CliRunner().invoke(main, ["--debug", "run", str(path)])
    assert isinstance(debug.exception, SpecError)
    assert isinstance(debug.exception.__cause__, yaml.YAMLError)  # the parser's own error


def test_a_database_it_cannot_open_keeps_the_drivers_error_under_debug(tmp_path):
    pytest.importorskip("psycopg")
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent("""
        name: quad
        n_trials: 1
        objective: {callable: "objective.py:objective"}
        search_space: {x: {type: float, low: -1, high: 1}}
    """))
    # Port 1 on the loopback: refused at once, no server there.
    url = "postgresql+psycopg://hpo:secret@127.0.0.1:1/nothing"
    debug = CliRunner().invoke(main, ["--debug", "status", str(path), "--storage", url])
    assert debug.exception is not None and debug.exception.__cause__ is not None
    assert "secret" not in str(debug.exception)


def test_the_quick_exit_runs_atexit_handlers_and_flushes_output(tmp_path):
    marker = tmp_path / "atexit-ran"
    script = textwrap.dedent(f"""
        import atexit, sys
        atexit.register(lambda: open({str(marker)!r}, "w").write("yes"))
        sys.stdout.write("printed before leaving")  # no newline: only a flush shows it
        from hpo.quick_exit import quick_exit
        quick_exit(3)
        print("never reached")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3
    assert done.stdout == "printed before leaving"
    assert marker.read_text() == "yes"
