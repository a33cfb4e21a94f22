"""How many trials a worker trains at once (`train.pack`), and what `auto` picks.

Packing pays where a training step is per-operation overhead rather than arithmetic, and
only if it beats what `hpo run` already does on a CPU: one one-thread worker per core. On 2
CPU cores it does not, so `auto` trains one trial at a time. Measured there (medians of 3
seeds, whole `hpo run` commands, 2 workers; `benchmarks/search_quality.py`): the quickstart
in 11.5 s one at a time, 15.5 s with `pack: 4`; with its batch size fixed at 32, 13.9 s and
16.3 s. Training alone, in one process on one thread (`benchmarks/pack.py`), 8 runs at batch
32 packed train 1.4-1.8x the trials per second of one at a time, 4 runs 1.1x, and at batch
256 0.9x: a 128-wide layer's products are arithmetic the stack does not share. On a GPU, where
overhead is nearly all of a small model's step, packing should pay most, but no GPU has
measured it yet (`python benchmarks/pack.py --device cuda`); until one does, `auto` is one
there too, and `pack: K` asks for K.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpo.spec import StudySpec


def pack_size(spec: StudySpec) -> int:
    """The trials one worker trains at once: the study file's `train.pack` (`auto`: one, see
    the module's doc); one for a user's objective, which cannot be packed."""
    if not spec.objective.trainer:
        return 1
    pack = spec.objective.train.pack
    return 1 if pack == "auto" else pack
