"""One digits trial beside a CPU hog: the threads a path trains on, against one thread.

Trains the quickstart's model (64-128-128-10, batch norm, dropout 0.2, Adam) with the built-in
trainer (`loop.train`) in this one process, side by side in rounds: on one thread (the
baseline) and on as many threads as usable CPUs (what `--workers 1`, staged files, `hpo.run`,
`hpo check` and `hpo lr-find` trained on before; `loop.default_threads()` is what they pick
now), each without and with CPU hogs (`yes > /dev/null`, started and killed here, each
bounded by `timeout`). Prints each setting's median time and its ratio to the baseline (one
thread, no hog) and to one thread under the same load, as the median and range of the
rounds' ratios (each round's against that round's baseline).

    python benchmarks/contention.py [--rounds 3] [--epochs 5] [--batch-sizes 32 256]
        [--hidden 128 128] [--hogs 1] [--wait-policy hpo|libgomp]

`--wait-policy libgomp` imports torch before hpo, so OpenMP keeps its own default (threads
spin a while before they sleep), as before hpo set `OMP_WAIT_POLICY=PASSIVE`; run it both
ways to see what the policy does for a run told `train.threads: N`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

HOG_BOUND_S = 300  # a hog outlives this script by at most this long, whatever happens to it


@contextlib.contextmanager
def hogs(n: int) -> Iterator[None]:
    """`n` processes of `yes > /dev/null` while the block runs."""
    if n and shutil.which("yes") is None:
        sys.exit("the hog needs `yes` (coreutils)")
    started = [subprocess.Popen(["timeout", str(HOG_BOUND_S), "yes"],
                                stdout=subprocess.DEVNULL) for _ in range(n)]
    try:
        time.sleep(0.2 if n else 0)  # running, not starting, when the timing begins
        yield
        if any(p.poll() is not None for p in started):
            print(f"warning: a hog stopped at its {HOG_BOUND_S} s bound before its timing "
                  "ended", file=sys.stderr)
    finally:
        for p in started:
            p.terminate()  # timeout passes it on to its yes and reaps it
        for p in started:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                # timeout leads its own process group (itself and yes): end both, by its id.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--hogs", type=int, default=1, help="CPU hogs beside the trial")
    parser.add_argument("--wait-policy", choices=["hpo", "libgomp"], default="hpo")
    args = parser.parse_args()
    if args.wait_policy == "libgomp":
        os.environ.pop("OMP_WAIT_POLICY", None)
        import torch  # noqa: F401  (loads libgomp before hpo can set its wait policy)

    from hpo.training.data import DataConfig, load_data
    from hpo.training.loop import TrainConfig, default_threads, train, usable_cpus, warm_up

    policy = os.environ.get("OMP_WAIT_POLICY") if args.wait_policy == "hpo" else None
    cpus = usable_cpus()
    print(f"{cpus} usable CPUs, load average {os.getloadavg()[0]:.1f} before the hogs; "
          f"OMP_WAIT_POLICY {policy or 'unset (libgomp default)'}; one worker now trains "
          f"on {default_threads()} thread(s), before on {cpus}; {args.hogs} hog(s), "
          f"{args.rounds} rounds, {args.epochs} epochs, hidden {args.hidden}")
    data = load_data(DataConfig(dataset="digits"), None)
    warm_up()
    counts = sorted({1, cpus})
    for batch_size in args.batch_sizes:
        def config(threads: int, batch_size: int = batch_size) -> Any:
            return TrainConfig(hidden=args.hidden, batch_norm=True, dropout=0.2,
                               epochs=args.epochs, batch_size=batch_size, lr=1e-3,
                               optimizer="adam", lr_decay=0.95, threads=threads)

        times: dict[tuple[int, int], list[float]] = {}
        for round_ in range(args.rounds):
            for hog in (0, args.hogs):
                with hogs(hog):
                    # Rotated each round, so no setting always runs first after a hog starts.
                    order = counts[round_ % len(counts):] + counts[:round_ % len(counts)]
                    for threads in order:
                        started = time.perf_counter()
                        train(config(threads), data)
                        seconds = time.perf_counter() - started
                        times.setdefault((threads, hog), []).append(seconds)
        report(batch_size, times)


def report(batch_size: int, times: dict[tuple[int, int], list[float]]) -> None:
    base = times[(1, 0)]
    print(f"\nbatch {batch_size}: median s (range) | x baseline (1 thread, no hog) | "
          "x 1 thread under the same load")
    for (threads, hog), seconds in sorted(times.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        alone = times[(1, hog)]
        to_base = [s / b for s, b in zip(seconds, base, strict=True)]
        to_load = [s / a for s, a in zip(seconds, alone, strict=True)]
        label = f"{threads} thread{'s' if threads > 1 else ''}, " + (
            f"{hog} hog{'s' if hog > 1 else ''}" if hog else "no hog")
        print(f"  {label:20} {statistics.median(seconds):6.2f} s "
              f"({min(seconds):.2f}-{max(seconds):.2f}) | {_ratios(to_base)} | "
              f"{_ratios(to_load)}")


def _ratios(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):5.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


if __name__ == "__main__":
    main()
