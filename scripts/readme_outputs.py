"""Run the README's example commands and write their output into its fenced blocks.

Each block sits between `<!-- readme_outputs: NAME -->` and `<!-- /readme_outputs -->`, a
fenced block of `$ COMMAND` lines, each followed by the command's standard output, as a user
running it from the repository's root sees it (messages on stderr, such as `Wrote lr.html`,
are left out). Commands run as subprocesses, in order, in one scratch folder that holds a
copy of `studies/` (without databases), so a block can read what an earlier one wrote (the
refine block refines the study the edge block ran) and nothing lands in the checkout.

    python scripts/readme_outputs.py [--check] [--only lr-find,check] [--readme README.md]

`--check` rewrites nothing: it prints a diff and exits 1 when a fresh run differs from the
README. To show another command's output, add a (name, commands) to BLOCKS and its markers
around an empty fenced block in the README. `--only` runs the named blocks alone, so a block
that reads an earlier one's study needs that one named too.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# (name, commands as the README shows them): the name ties the commands to their markers.
# `--workers 1`: one worker's TPE sees every trial before the next, so its trials, and the
# output, are the same run after run (two workers race).
BLOCKS: list[tuple[str, list[str]]] = [
    ("check", ["hpo check studies/digits-lr.yaml"]),
    ("lr-find", ["hpo lr-find studies/digits-lr.yaml --out lr.html"]),
    ("edge", ["hpo run studies/digits-lr.yaml --workers 1 -q"]),
    ("refine", ["hpo refine studies/digits-lr.yaml --out studies/digits-lr-2.yaml",
                "sed -n '/search_space/,$p' studies/digits-lr-2.yaml",
                "hpo run studies/digits-lr-2.yaml --workers 1 -q"]),
]
# What differs run to run and is left out of --check's comparison: a run's wall-clock time.
VOLATILE = re.compile(r"(?<= in )\d+(\.\d+)? s\b")
# The scratch folder a run's stored-in line names, shown as a user's checkout.
SHOWN_ROOT = "/path/to/hpo"
# Exit codes that still give output worth showing: `hpo check` exits 1 when a check fails.
SHOWN_EXIT_CODES = (0, 1)


# The block's markers and fences (groups 1 and 3) around its body (group 2).
def _block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- readme_outputs: {re.escape(name)} -->\n```[^\n]*\n)(.*?)"
                      r"(```\n<!-- /readme_outputs -->)", re.DOTALL)


def run(commands: list[str], cwd: Path) -> str:
    """The block's text for `commands`: each one's prompt line, then what it printed."""
    text = ""
    for command in commands:
        argv = shlex.split(command)
        executable = shutil.which(argv[0])
        if executable is None:
            sys.exit(f"{argv[0]} is not installed (pip install -e .)")
        done = subprocess.run([executable, *argv[1:]], cwd=cwd, capture_output=True,
                              text=True)
        if done.returncode not in SHOWN_EXIT_CODES:
            sys.exit(f"`{command}` exited {done.returncode}:\n{done.stderr}")
        text += f"$ {command}\n{done.stdout.replace(str(cwd), SHOWN_ROOT)}"
    return text


def stable(text: str) -> str:
    """`text` without what changes from run to run (see VOLATILE)."""
    return VOLATILE.sub("N s", text)


def rewrite(text: str, outputs: dict[str, str]) -> str:
    """`text` with each named block's body replaced by its output."""
    for name, output in outputs.items():
        found = list(_block_pattern(name).finditer(text))
        if len(found) != 1:
            sys.exit(f"the README needs exactly one block for {name!r}: "
                     f"<!-- readme_outputs: {name} --> ```...``` <!-- /readme_outputs -->")
        text = text[:found[0].start(2)] + output + text[found[0].end(2):]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 with a diff when the README is out of date")
    parser.add_argument("--only", help="comma-separated block names [default: all]")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [name for name, _ in BLOCKS]
    commands = dict(BLOCKS)
    unknown = [name for name in names if name not in commands]
    if unknown:
        sys.exit(f"--only: no block {', '.join(unknown)}; the blocks: {', '.join(commands)}")
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(ROOT / "studies", Path(scratch) / "studies",
                        ignore=shutil.ignore_patterns("*.db*", "*.hpo-lock", "*-2.yaml"))
        outputs = {name: run(commands[name], Path(scratch)) for name in names}
    old = args.readme.read_text()
    new = rewrite(old, outputs)
    if args.check:
        if stable(new) != stable(old):
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(keepends=True), new.splitlines(keepends=True),
                f"{args.readme} (as written)", f"{args.readme} (a fresh run)"))
            sys.exit(1)
        print(f"{args.readme}: {', '.join(names)} match a fresh run")
    elif new != old:
        args.readme.write_text(new)
        print(f"rewrote {', '.join(names)} in {args.readme}")
    else:
        print(f"{args.readme}: {', '.join(names)} already up to date")


if __name__ == "__main__":
    main()
