"""The built-in trainer's limits, one table: what each parameter can take, and where a search
of it sensibly stops.

A *hard* limit is a value the trainer cannot take (a batch size of 0, a negative lr, dropout
1): the study file's fixed values (the trainer section's fields are bounded by it), searched
ranges and choices, `enqueue:`, a stage's `fixed:`, `--param` and `hpo enqueue` are all
checked against it when the file is read, before anything is written. A *natural* limit is
where a search sensibly stops inside the hard one (dropout 0.9, momentum 0.999): edge
warnings stay quiet there and `hpo refine` never widens past it (nor past a hard limit). Both
live in one `Limit` per parameter, so validation, edge warnings and refine cannot disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, get_args

from hpo.spec.base import did_you_mean
from hpo.training.config import ActivationName, InitializerName, OptimizerName


@dataclass(frozen=True)
class Limit:
    """What the trainer takes for one numeric parameter (hard), and where a search stops."""

    low: float | None = None  # hard: a value below is refused
    high: float | None = None
    low_open: bool = False  # low itself is refused too (lr > 0)
    high_open: bool = False
    whole: bool = False  # a whole number (batch_size)
    nullable: bool = False  # null means the trainer's default (momentum: null)
    # Natural limits, where they lie inside the hard ones; else a closed hard limit is one.
    stop_low: float | None = None
    stop_high: float | None = None

    def allows(self, value: Any) -> bool:
        """Whether the trainer can take `value`."""
        if value is None:
            return self.nullable
        if isinstance(value, bool) or not isinstance(value, int if self.whole else (int, float)):
            return False
        return self.contains(value)

    def contains(self, value: float) -> bool:
        """Whether the number `value` lies between the hard limits."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self, name: str) -> str:
        """The values allowed, as a person reads them: `0 <= dropout < 1`."""
        low = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '<='} "
        high = "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high:g}"
        if self.low is not None and self.high is None:  # `lr > 0` reads better than `0 < lr`
            low, high = "", f" {'>' if self.low_open else '>='} {self.low:g}"
        whole = ", an integer" if self.whole else ""
        null = ", or null for the default" if self.nullable else ""
        return f"{low}{name}{high}{whole}{null}"

    @property
    def natural(self) -> tuple[float | None, float | None]:
        """Where a search sensibly stops: the natural limit, else a closed hard limit."""
        low = self.stop_low if self.stop_low is not None else (
            None if self.low_open else self.low)
        high = self.stop_high if self.stop_high is not None else (
            None if self.high_open else self.high)
        return low, high

    def field(self) -> dict[str, Any]:
        """The hard limits as pydantic `Field` bounds, for the trainer section's fixed value."""
        bounds: dict[str, Any] = {} if self.whole else {"allow_inf_nan": False}
        if self.low is not None:
            bounds["gt" if self.low_open else "ge"] = self.low
        if self.high is not None:
            bounds["lt" if self.high_open else "le"] = self.high
        return bounds

    def inside(self, bound: float, edge: str, start: float) -> float:
        """`bound`, a range's `edge` moved out from `start`, kept where the trainer can take
        it: at a closed hard limit, or halfway from `start` to an open one."""
        limit, is_open = ((self.high, self.high_open) if edge == "high" else
                          (self.low, self.low_open))
        if limit is None:
            return bound
        beyond = bound >= limit if edge == "high" else bound <= limit
        if not beyond:
            return bound
        return (start + limit) / 2 if is_open else limit


# The trainer's numeric parameters. Its real limits: a batch size, epoch count, layer count or
# width below 1 trains nothing (`range()` with a step of 0, an empty loop or layer); dropout 1
# zeroes every unit (and divides by 0 in a pack); momentum 1 never forgets a gradient and
# beyond 1 amplifies them; a negative lr, weight decay or gradient clip turns descent around;
# lr_decay must keep the lr positive and not growing.
TRAINER_LIMITS: dict[str, Limit] = {
    "lr": Limit(low=0, low_open=True),
    "dropout": Limit(low=0, high=1, high_open=True, stop_high=0.9),
    "momentum": Limit(low=0, high=1, high_open=True, nullable=True, stop_high=0.999),
    "weight_decay": Limit(low=0),
    "lr_decay": Limit(low=0, high=1, low_open=True, nullable=True),
    "grad_clip": Limit(low=0, low_open=True, nullable=True),
    "batch_size": Limit(low=1, whole=True),
    "epochs": Limit(low=1, whole=True),
    "early_stop_patience": Limit(low=1, whole=True, nullable=True),
    "hidden_units": Limit(low=1, whole=True),
    "n_layers": Limit(low=1, whole=True),
}

# The trainer's named parameters and the names each takes.
TRAINER_NAMES: dict[str, tuple[Any, ...]] = {
    "initializer": get_args(InitializerName),
    "optimizer": get_args(OptimizerName),
    "activation": get_args(ActivationName),
    "batch_norm": (False, True),
}

LAYER_SHAPE = re.compile(r"[1-9]\d*(,[1-9]\d*)*|[1-9]\d*x[1-9]\d*")
LAYER_SHAPE_HINT = ('write 128 (one layer), "128,64" (one width a layer) or "128x3" (3 layers '
                    'of 128)')


def natural_limits() -> dict[str, tuple[float | None, float | None]]:
    """Where a search of each trainer parameter sensibly stops (edge warnings, refine)."""
    return {name: limit.natural for name, limit in TRAINER_LIMITS.items()
            if limit.natural != (None, None)}


def value_problem(name: str, value: Any, fix: str) -> str | None:
    """Why the trainer cannot take `value` for its parameter `name`, or None if it can; a
    number's problem ends with `fix` (a name's and a layer shape's say what is allowed)."""
    limit = TRAINER_LIMITS.get(name)
    if limit is not None:
        if limit.allows(value):
            return None
        kind = "a number" if not limit.whole else "an integer"
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (limit.whole and isinstance(value, float))):
            return f"{value!r} is not {kind}; the trainer takes {limit.text(name)}; {fix}"
        return f"{value!r} is outside what the trainer takes ({limit.text(name)}); {fix}"
    names = TRAINER_NAMES.get(name)
    if names is not None:
        if isinstance(value, bool) == (name == "batch_norm") and value in names:
            return None
        if name == "batch_norm":
            return f"{value!r} is not true or false; the trainer takes batch_norm: true or false"
        hint = did_you_mean(value, list(names)) if isinstance(value, str) else ""
        return f"unknown {name} {value!r}; {hint}allowed: {', '.join(names)}"
    if name == "hidden" and not (isinstance(value, (int, str)) and not isinstance(value, bool)
                                 and LAYER_SHAPE.fullmatch(str(value))):
        return f"{value!r} is not a layer shape; {LAYER_SHAPE_HINT}"
    return None


def range_problems(name: str, entry: Any) -> list[str]:
    """Why the trainer cannot take every value of a float or int range `entry` of its
    parameter `name`, a line each (empty when it can)."""
    where = f"search_space.{name}"
    if name == "batch_norm":
        return [f"{where}: batch_norm takes true or false, not a number; use type: "
                "categorical, choices: [false, true]"]
    if name in TRAINER_NAMES:
        return [f"{where}: {name} takes a name, not a number; use type: categorical with "
                f"choices from: {', '.join(TRAINER_NAMES[name])}"]
    limit = TRAINER_LIMITS.get("hidden_units" if name == "hidden" else name)
    if limit is None:
        return []
    if limit.whole and entry.type == "float":
        return [f"{where}.type: a float range draws fractions, and the trainer takes "
                f"{limit.text(name)}; use type: int"]
    problems = [f"{where}.{key}: {bound!r} is outside what the trainer takes "
                f"({limit.text(name)}); keep low and high inside it"
                for key, bound in (("low", entry.low), ("high", entry.high))
                if not limit.allows(bound)]
    declared = entry.limits
    for key, bound in (("low", declared.low if declared else None),
                       ("high", declared.high if declared else None)):
        edge = limit.low if key == "low" else limit.high
        # A declared limit may sit on an open hard limit: it bounds the range from outside.
        if bound is not None and not (limit.contains(bound) or bound == edge):
            problems.append(f"{where}.limits.{key}: {bound!r} is outside what the trainer "
                            f"takes ({limit.text(name)}); a limit lies within it")
    return problems
