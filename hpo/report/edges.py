"""Edge warnings: a best value in the outer tenth of its range says the range is probably wrong.

A numeric entry is flagged when its best trial, or at least half of the top trials, sit in
the outer tenth of the range (measured in log space for `log: true`), with a concrete
widening, never past what the built-in trainer can take. Not at a limit: an edge that is also
a natural limit of the parameter (dropout 0; `hpo.spec.limits` holds the trainer's) or a
declared one (`limits:` in the entry) is where it belongs. And where most trials beyond
the best diverged or failed, the edge is a stability wall: training falls over past it, so
widening would only buy more failures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpo.report.trials import diverged, ranked
from hpo.spec import TRAINER_LIMITS, natural_limits

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.spec import Limit, StudySpec

EDGE_FRACTION = 0.1  # the outer tenth of a range
MIN_COMPLETE = 5  # fewer completed trials say nothing about where the best lies
TOP_FRACTION = 0.1  # the top trials: the best tenth, at least TOP_MIN of them
TOP_MIN = 3
WIDEN_FRACTION = 0.5  # a flagged edge moves out by half the range's width ...
MAX_LOG_WIDEN = 10.0  # ... on a log scale by at most a decade


class Limits(dict[str, tuple[float | None, float | None]]):
    """Each entry's (low, high) limits, natural or declared, that edges stop at; beside them,
    in `hard`, the built-in trainer's own (`hpo.spec.Limit`), which a widening never reaches
    where they are open (lr > 0)."""

    hard: dict[str, Limit] = {}


@dataclass
class EdgeWarning:
    param: str
    edge: str  # "low" | "high"
    best: float
    low: float
    high: float
    suggestion: str
    stability_wall: bool
    widened_to: float | None  # the new bound to search to; None at a stability wall

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["widened_to"]
        return data


def limits_for(spec: StudySpec | None, study: optuna.Study | None = None) -> Limits:
    """Each entry's limits: the trainer's natural ones, then those the file declares."""
    trainer = (spec.objective.trainer if spec is not None else
               (study.user_attrs.get("hpo_spec", {}).get("objective", {}).get("trainer")
                if study is not None else None))
    limits = Limits(natural_limits() if trainer else {})
    limits.hard = dict(TRAINER_LIMITS) if trainer else {}
    for name, entry in (spec.search_space.items() if spec is not None else ()):
        declared = getattr(entry, "limits", None)
        if declared is not None:
            natural = limits.get(name, (None, None))
            limits[name] = (declared.low if declared.low is not None else natural[0],
                            declared.high if declared.high is not None else natural[1])
    return limits


def _scale(distribution: Any) -> Any:
    return math.log if distribution.log else (lambda v: v)


def position(value: float, distribution: Any) -> float:
    """Where `value` lies in the distribution's range: 0 at low, 1 at high (log-aware)."""
    t = _scale(distribution)
    span = t(distribution.high) - t(distribution.low)
    return (t(value) - t(distribution.low)) / span if span else 0.5


def top_trials(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The best tenth of the completed trials (at least TOP_MIN), best first."""

    complete = ranked(study, trials)
    return complete[:max(TOP_MIN, math.ceil(TOP_FRACTION * len(complete)))]


def _at_limit(bound: float, limit: float | None) -> bool:
    return limit is not None and math.isclose(bound, limit, rel_tol=1e-9, abs_tol=1e-12)


def widened(distribution: Any, edge: str, limit: float | None, hard: Limit | None = None
            ) -> float:
    """The bound a flagged edge moves to: half the width further (a decade at most on a log
    scale), no further than its limit, and where the trainer's `hard` limit allows (halfway
    to an open one); whole numbers for an int entry."""
    low, high = distribution.low, distribution.high
    if distribution.log:
        factor = min(MAX_LOG_WIDEN, (high / low) ** WIDEN_FRACTION)
        bound = high * factor if edge == "high" else low / factor
    else:
        width = WIDEN_FRACTION * (high - low)
        bound = high + width if edge == "high" else low - width
    if limit is not None:
        bound = min(bound, limit) if edge == "high" else max(bound, limit)
    if hard is not None:
        bound = hard.inside(bound, edge, high if edge == "high" else low)
    if isinstance(distribution, IntDistribution):
        bound = math.ceil(bound) if edge == "high" else math.floor(bound)
        if distribution.log:
            bound = max(bound, 1)
    if not isinstance(distribution, FloatDistribution):
        return bound
    # Three digits read well, unless rounding would cross a limit (0.9995 to 1).
    rounded = float(f"{bound:.3g}")
    crossed = limit is not None and (rounded > limit if edge == "high" else rounded < limit)
    return bound if crossed or (hard is not None and not hard.allows(rounded)) else rounded


def _wall(name: str, best: float, edge: str, trials: list[FrozenTrial]) -> tuple[int, int]:
    """How many trials beyond the best (towards the edge) there are, and how many of them
    diverged or failed."""
    beyond = [t for t in trials if name in t.params
              and (t.params[name] > best if edge == "high" else t.params[name] < best)
              and t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    fallen = [t for t in beyond if t.state == TrialState.FAIL or diverged(t)]
    return len(beyond), len(fallen)


def _entry_text(name: str, distribution: Any, low: float, high: float) -> str:
    log = ", log: true" if distribution.log else ""
    kind = "int" if isinstance(distribution, IntDistribution) else "float"
    return f"{name}: {{type: {kind}, low: {low:g}, high: {high:g}{log}}}"


def edge_warnings(study: optuna.Study, limits: Limits | None = None,
                  trials: list[FrozenTrial] | None = None) -> list[EdgeWarning]:
    """The numeric entries whose best values sit at an edge of their range, with advice
    (`trials`: the study's, where the caller has them already)."""
    limits = limits or {}
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    top = top_trials(study, trials)
    if not top:
        return []
    best = top[0]
    warnings = []
    for name, distribution in best.distributions.items():
        if not isinstance(distribution, (FloatDistribution, IntDistribution)):
            continue
        complete = [t for t in trials if t.state == TrialState.COMPLETE and name in t.params]
        if len(complete) < MIN_COMPLETE or distribution.low == distribution.high:
            continue
        value = best.params[name]
        edge = _edge(name, value, distribution, top)
        if edge is None:
            continue
        low_limit, high_limit = limits.get(name, (None, None))
        limit = high_limit if edge == "high" else low_limit
        bound = distribution.high if edge == "high" else distribution.low
        if _at_limit(bound, limit):
            continue
        warnings.append(_advise(name, value, edge, distribution, limit, trials,
                                getattr(limits, "hard", {}).get(name)))
    return warnings


def _edge(name: str, value: float, distribution: Any, top: list[FrozenTrial]) -> str | None:
    where = position(value, distribution)
    if where >= 1 - EDGE_FRACTION:
        return "high"
    if where <= EDGE_FRACTION:
        return "low"
    positions = [position(t.params[name], distribution) for t in top if name in t.params]
    for edge, inside in (("high", lambda p: p >= 1 - EDGE_FRACTION),
                         ("low", lambda p: p <= EDGE_FRACTION)):
        if positions and sum(map(inside, positions)) * 2 >= len(positions):
            return edge
    return None


def _advise(name: str, value: float, edge: str, distribution: Any, limit: float | None,
            trials: list[FrozenTrial], hard: Limit | None) -> EdgeWarning:
    low, high = distribution.low, distribution.high
    beyond, fallen = _wall(name, value, edge, trials)
    side = "above" if edge == "high" else "below"
    if beyond >= 2 and fallen * 2 > beyond:
        suggestion = (f"a stability wall, not a reason to widen: {fallen} of the {beyond} "
                      f"trials with {name} {side} the best ({value:.4g}) diverged or failed; "
                      f"training falls over past it, so keep {edge} at "
                      f"{_bound(distribution, edge)}")
        return EdgeWarning(name, edge, value, low, high, suggestion, True, None)
    bound = widened(distribution, edge, limit, hard)
    new_low, new_high = (low, bound) if edge == "high" else (bound, high)
    scale = " (log scale)" if distribution.log else ""
    suggestion = (f"the best {name} ({value:.4g}) is at the {edge} edge of {low:g} .. {high:g}"
                  f"{scale}; widen {edge} to {bound:g}: "
                  f"{_entry_text(name, distribution, new_low, new_high)}")
    if limit is not None and bound == limit:
        suggestion += " (its limit)"
    return EdgeWarning(name, edge, value, low, high, suggestion, False, bound)


def _bound(distribution: Any, edge: str) -> str:
    return f"{distribution.high if edge == 'high' else distribution.low:g}"
