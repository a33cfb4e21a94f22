"""The house as a user meets it: a read command loads only what reading needs."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import cli, study_yaml, write_study

PROBE = """
import sys
from hpo.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted({m.split(".")[1] for m in sys.modules if m.startswith("hpo.")}), file=sys.stderr)
"""


def _packages_loaded(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, timeout=120)
    return ast.literal_eval(done.stderr.strip().splitlines()[-1])  # the probe's last line


def test_reading_a_study_loads_neither_the_worker_nor_the_wisdom(tmp_path):
    path = write_study(tmp_path, study_yaml(n_trials=3))
    assert cli("run", path, "-q").exit_code == 0
    for command in (["status", str(path)], ["best", str(path)], ["export", str(path)]):
        loaded = _packages_loaded(*command)
        assert "store" in loaded and "report" in loaded  # the probe saw the command's work
        assert "worker" not in loaded and "wisdom" not in loaded, (command, loaded)
