"""The house as a user meets it: a read command loads only what reading needs, and the
benchmarks and scripts import names that exist."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli, study_yaml, write_study

ROOT = Path(__file__).resolve().parent.parent

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


def _hpo_imports(path: Path) -> list[tuple[str, str]]:
    """The (module, name) pairs of each `from hpo... import name` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hpo":
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_every_hpo_name_the_benchmarks_and_scripts_import_exists():
    # They run by hand, not in this suite: a module that moved would break them unseen.
    missing = []
    for path in sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")]):
        for module, name in _hpo_imports(path):
            imported = importlib.import_module(module)
            if not hasattr(imported, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ModuleNotFoundError:
                    missing.append(f"{path.name}: from {module} import {name}")
    assert not missing
