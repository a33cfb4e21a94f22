"""`hpo check` and `hpo lr-find` on the quickstart, timed as a user waits for them.

    python benchmarks/check_time.py [--repeat 3]

Each command runs as a whole process (interpreter start, torch import, data loading
included); the median wall time is printed against the issue's budget for the checks,
15 s on 2 cores, as a ratio (below 1 is within it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "studies" / "quickstart.yaml"
BUDGET_S = 15.0


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # check exits 1 when a check fails; that still counts
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    hpo = shutil.which("hpo") or sys.exit("hpo is not installed (pip install -e .)")
    for name, command in (("hpo check", [hpo, "check", str(QUICKSTART)]),
                          ("hpo lr-find", [hpo, "lr-find", str(QUICKSTART)])):
        times = [_timed(command) for _ in range(args.repeat)]
        median = statistics.median(times)
        print(f"{name:12} median {median:5.1f} s over {args.repeat} runs; "
              f"ratio to the {BUDGET_S:.0f} s budget: {median / BUDGET_S:.2f}")


if __name__ == "__main__":
    main()
