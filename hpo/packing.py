"""How many trials a worker trains at once (`train.pack`), and what `auto` picks.

Packing pays where a training step is bound by per-operation overhead rather than arithmetic:
small layers and small batches. Measured on 2 CPU cores, quickstart model (64-128-128-10,
batch norm), 8 runs packed against one after another on one thread (`benchmarks/pack.py`):
1.5-1.85x the trials per second at batch 32, 0.9x at batch 256 (its matrix products are
arithmetic-bound, as the separate runs' are), about 1.1x over the quickstart's mix of batch
sizes. TPE proposes well with a few trials pending (the constant liar counts them as bad
guesses): best accuracy after 50 quickstart trials, median of 3 seeds, 0.9917 with 2 workers
x 4 packed as with one trial at a time; 0.9889 with 2 x 8 (`benchmarks/search_quality.py`).
So `auto` packs AUTO_PACK on the CPU when every batch size and layer width the study can
draw is small; else one. On a GPU, where overhead is nearly all of a small model's step, it
should pay most, but no GPU has measured it yet: `auto` trains one at a time there until one
does (`python benchmarks/pack.py --device cuda`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo.spec import StudySpec

AUTO_PACK = 4
PACK_MAX_BATCH = 64  # `auto` packs when no batch is larger ...
PACK_MAX_WIDTH = 128  # ... and no hidden layer wider


def pack_size(spec: StudySpec) -> int:
    """The trials one worker trains at once: the study file's `train.pack`, or what `auto`
    picks (see the module's doc); one for a user's objective, which cannot be packed."""
    if not spec.objective.trainer:
        return 1
    train = spec.objective.train
    if train.pack != "auto":
        return train.pack
    if train.device == "cuda" or (train.device == "auto" and _cuda_present()):
        return 1
    small = (_largest(spec, "batch_size", [train.batch_size]) <= PACK_MAX_BATCH
             and _largest_width(spec) <= PACK_MAX_WIDTH)
    return AUTO_PACK if small else 1


def _cuda_present() -> bool:
    from hpo.workers import _cuda_present as present

    return present()


def _drawn(spec: StudySpec, name: str) -> list[Any] | None:
    """The values the search space can draw for `name` (a range as its two ends), or None
    when it is not searched."""
    entry = spec.search_space.get(name)
    if entry is None:
        return None
    choices = getattr(entry, "choices", None)
    return list(choices) if choices is not None else [entry.low, entry.high]


def _largest(spec: StudySpec, name: str, fixed: list[Any]) -> float:
    drawn = _drawn(spec, name)
    return max(float(v) for v in (drawn if drawn is not None else fixed))


def _largest_width(spec: StudySpec) -> float:
    from hpo.objective import hidden_layers

    hidden = _drawn(spec, "hidden")
    if hidden is not None:
        return max((max(hidden_layers(v), default=0) for v in hidden), default=0)
    fixed = spec.objective.model.hidden
    return _largest(spec, "hidden_units", [max(fixed, default=0)])
