"""scripts/readme_outputs.py: the README's example outputs match a fresh run of their commands."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.training.loop import usable_cpus

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "readme_outputs.py"

STALE = """Intro.

<!-- readme_outputs: check -->
```
$ hpo check studies/digits-lr.yaml
an old output
```
<!-- /readme_outputs -->

After.
"""


def _module():
    spec = importlib.util.spec_from_file_location("readme_outputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The README shows output from a 2-core machine: torch's float sums, and so the last digits,
# follow the thread count, which hpo sets from the CPUs.
def _check(blocks: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check", "--only", blocks],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, (
        f"README.md is stale; run `python scripts/readme_outputs.py` to rewrite it:\n"
        f"{done.stdout}{done.stderr}")


@pytest.mark.skipif(usable_cpus() != 2, reason="the README's outputs come from 2 cores")
def test_the_readme_outputs_match_a_fresh_run():
    # `hpo check` and `hpo lr-find` on digits-lr print the same digits run after run on one
    # machine (a CPU hog beside them changes nothing), so the match is exact.
    _check("check,lr-find")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(usable_cpus() != 2, reason="the README's outputs come from 2 cores")
def test_the_readme_walk_through_of_edge_warnings_and_refine_matches_a_fresh_run():
    # Two 20-trial studies of digits-lr, one worker each (a minute or two on an idle machine,
    # several on a busy one): the same trials, values and refined file run after run.
    _check("edge,refine")


def test_check_mode_prints_a_diff_and_exits_1_and_rewriting_fixes_it(tmp_path, monkeypatch,
                                                                      capsys):
    module = _module()
    monkeypatch.setattr(module, "run",
                        lambda commands, cwd: f"$ {commands[0]}\na new output\n")
    readme = tmp_path / "README.md"
    readme.write_text(STALE)
    monkeypatch.setattr(sys, "argv", ["readme_outputs.py", "--check", "--only", "check",
                                      "--readme", str(readme)])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 1
    diff = capsys.readouterr().out
    assert "-an old output" in diff and "+a new output" in diff
    assert readme.read_text() == STALE  # --check writes nothing

    monkeypatch.setattr(sys, "argv", ["readme_outputs.py", "--only", "check",
                                      "--readme", str(readme)])
    module.main()
    assert readme.read_text() == STALE.replace("an old output", "a new output")
    monkeypatch.setattr(sys, "argv", ["readme_outputs.py", "--check", "--only", "check",
                                      "--readme", str(readme)])
    module.main()  # no SystemExit: up to date
    assert "match a fresh run" in capsys.readouterr().out


def test_a_block_without_its_markers_is_named():
    module = _module()
    with pytest.raises(SystemExit, match="exactly one block for 'lr-find'"):
        module.rewrite(STALE, {"lr-find": "$ hpo lr-find\n"})
