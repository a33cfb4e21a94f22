"""Coarse to fine: the next stage's search space, read from the top trials of a finished one.

A refined space must never do worse than the flat search it replaces, so it narrows only
where the evidence says so and never takes a value away that the search could still need:
- Numeric entries shrink to the box the top trials fill (all of them, not a quantile range)
  plus a margin, in log space for `log: true`, always holding the best. A side is cut only
  where enough trials went beyond the new edge and none reached the top (the rule for
  categorical choices, below); where the best lies near an edge of that box, the old edge is
  kept on that side (the optimum may lie beyond the best seen); an edge warning's widening
  goes past it, never past a limit nor past what the built-in trainer takes.
- A numeric entry is never fixed, whatever its importance: importance is relative to
  today's ranges, and an entry that looks negligible while others are wide becomes the one
  that matters once they are narrowed. Its PED-ANOVA importance is kept as a comment.
- A categorical choice is dropped only when it had a fair count of finished trials and
  none among the top trials; otherwise it stays.
- The next study starts with every finished trial that lies inside the new space, carried
  over as evidence for its sampler (`hpo.store.carry`), so narrowing throws nothing away.
Every change carries the reason, for a YAML comment.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.report.edges import edge_warnings, limits_for
from hpo.spec import MIN_TRIALS_TO_REFINE, CategoricalParam, FloatParam, IntParam

if TYPE_CHECKING:
    import optuna

    from hpo.spec import Limit, Param, StudySpec

MIN_COMPLETE = MIN_TRIALS_TO_REFINE  # fewer completed trials say too little to narrow anything
TOP_FRACTION = 0.2  # the top trials: the best fifth, at least TOP_MIN of them
TOP_MIN = 5
MARGIN = 0.25  # of the top trials' span, added on each side ...
MIN_MARGIN = 0.05  # ... and at least this fraction of the old range
# A best this close to an edge of the top trials' box (as a fraction of the box) keeps the
# old edge on that side: the top trials have not shown where the good region ends there.
NEAR_EDGE = 0.2
MIN_CUT_TRIALS = 5  # finished trials beyond a new numeric edge needed to cut there
MIN_CHOICE_TRIALS = 5  # finished trials a categorical choice needs before it can be dropped
MIN_FOR_IMPORTANCE = 10  # completed trials PED-ANOVA needs to say anything


@dataclass
class Refinement:
    space: dict[str, dict[str, Any]]  # the new search_space, as study-file data
    comments: dict[str, str]  # why each entry changed (or did not)
    enqueue: dict[str, Any]  # the best trial's parameters, to start the next study from
    source: str  # a line naming the study and trials it was read from
    parent: str = ""  # the study refined, to carry its trials from


def entry_data(entry: Param) -> dict[str, Any]:
    """A search-space entry as study-file data, defaults left out."""
    return entry.model_dump(mode="json", exclude_defaults=True, exclude_none=True)


def _sig_down(value: float, digits: int = 3) -> float:
    if value == 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
    # The epsilon keeps float error (exp(log(1e-3)) = 0.0010000000000000002) from a step.
    return float(f"{math.floor(value / scale + 1e-9) * scale:.12g}")


def _sig_up(value: float, digits: int = 3) -> float:
    return -_sig_down(-value, digits)


def _clean(value: float) -> float:
    return float(f"{value:.6g}")


def importances(study: optuna.Study, completed: int) -> dict[str, float]:
    """Normalized PED-ANOVA importances; empty when `completed` trials are too few to say."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    if completed < MIN_FOR_IMPORTANCE:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}


def _keep_old(sides: list[str], low: float, high: float, old_low: float, old_high: float,
              why: list[str], reason: str) -> tuple[float, float]:
    """The range with the old edge back on each of `sides`, the reason noted in `why`."""
    if sides:
        why.append(f"kept the old {' and '.join(sides)} edge: {reason}")
    return (old_low if "low" in sides else low), (old_high if "high" in sides else high)


def _takes(value: float, limits: tuple[float | None, float | None], hard: Limit | None) -> bool:
    """Whether `value` lies within an entry's limits and is one the trainer takes."""
    low_limit, high_limit = limits
    return ((low_limit is None or value >= low_limit)
            and (high_limit is None or value <= high_limit)
            and (hard is None or hard.allows(value)))


def _numeric(name: str, entry: FloatParam | IntParam, values: list[float], best: float,
             limits: tuple[float | None, float | None], edge: Any,
             tried: list[float], hard: Limit | None = None) -> tuple[dict, str]:
    log = entry.log
    t = math.log if log else float
    back = math.exp if log else float
    points = [t(v) for v in values]
    top_low, top_high = min(*points, t(best)), max(*points, t(best))
    old_low, old_high = t(entry.low), t(entry.high)
    margin = max(MARGIN * (top_high - top_low), MIN_MARGIN * (old_high - old_low))
    low, high = max(top_low - margin, old_low), min(top_high + margin, old_high)
    why = [f"the top {len(values)} trials' span" + (" in log space" if log else "")
           + f" plus a {MARGIN:.0%} margin"]
    # Top trials that agree on one value say the most; the rule is for a best at one end.
    near = NEAR_EDGE * (top_high - top_low)
    kept = [side for side, gap in (("low", t(best) - top_low), ("high", top_high - t(best)))
            if gap <= near and top_high > top_low]
    low, high = _keep_old(kept, low, high, old_low, old_high, why,
                          f"the best ({best:.4g}) lies near the top trials' "
                          f"{' and '.join(kept)} end, so the good region may go on")
    # A region is cut away only where enough trials went and none reached the top.
    tried_points = [t(v) for v in tried]
    unexplored = [side for side, beyond in
                  (("low", sum(p < low for p in tried_points)),
                   ("high", sum(p > high for p in tried_points)))
                  if side not in kept and beyond < MIN_CUT_TRIALS
                  and (low > old_low if side == "low" else high < old_high)]
    low, high = _keep_old(unexplored, low, high, old_low, old_high, why,
                          f"fewer than {MIN_CUT_TRIALS} trials went beyond it")
    low, high = back(low), back(high)
    if edge is not None and edge.widened_to is not None:
        if edge.edge == "high":
            high = edge.widened_to
        else:
            low = edge.widened_to
        why.append(f"widened {edge.edge} to {edge.widened_to:g}: the best ({best:.4g}) sat at "
                   f"that edge (edge warning)")
    elif edge is not None:
        why.append(f"kept {edge.edge} at a stability wall")
    # An old edge kept comes back through exp(log(x)): it stays exactly as the file had it.
    low = entry.low if math.isclose(low, entry.low) else low
    high = entry.high if math.isclose(high, entry.high) else high
    low_limit, high_limit = limits
    low = max(low, low_limit) if low_limit is not None else low
    high = min(high, high_limit) if high_limit is not None else high
    data = entry_data(entry)
    data.pop("when", None)
    if isinstance(entry, IntParam) or entry.step is not None:
        step = entry.step
        origin = entry.low
        low = origin + math.floor((low - origin) / step + 1e-9) * step
        high = origin + math.ceil((high - origin) / step - 1e-9) * step
        on_grid = int if isinstance(entry, IntParam) else _clean
        low, high = on_grid(low), on_grid(high)
        # Rounded out to the grid, an edge may cross a limit: it comes a step back in.
        low = low if _takes(low, limits, hard) else on_grid(low + step)
        high = high if _takes(high, limits, hard) else on_grid(high - step)
        if low >= high:  # the top trials agree on one value: keep a step either side
            if high + step <= entry.high:
                high = high + step
            else:
                low = low - step
    else:
        # Three digits read well; an old edge stays as it was.
        low = low if low == entry.low else min(_sig_down(low), best)
        high = high if high == entry.high else max(_sig_up(high), best)
        if log and low <= 0:
            low = entry.low
        # Rounding must not cross a limit either.
        low = max(low, low_limit) if low_limit is not None else low
        high = min(high, high_limit) if high_limit is not None else high
    # Never what the trainer cannot take: the old edge, checked when the file was read.
    low = low if hard is None or hard.allows(low) else entry.low
    high = high if hard is None or hard.allows(high) else entry.high
    data.update(low=low, high=high)
    text = f"{name}: {entry.low:g} .. {entry.high:g} -> {low:g} .. {high:g}: " + "; ".join(why)
    return data, text


def _categorical(name: str, entry: CategoricalParam, top_values: list[Any],
                 finished: list[optuna.trial.FrozenTrial]) -> tuple[dict, str]:
    """Keep every choice but those tried often enough that none reaching the top says
    something: a choice tried twice and unlucky is not evidence."""
    tried = Counter(t.params[name] for t in finished if name in t.params)
    dropped = [c for c in entry.choices
               if c not in top_values and tried[c] >= MIN_CHOICE_TRIALS]
    data = {**entry_data(entry), "choices": [c for c in entry.choices if c not in dropped]}
    data.pop("when", None)
    if dropped:
        shown = ", ".join(f"{c} ({tried[c]} trials)" for c in dropped)
        return data, (f"{name}: dropped {shown}: none among the top {len(top_values)} "
                      f"trials")
    return data, (f"{name}: every choice kept (a choice goes only after "
                  f"{MIN_CHOICE_TRIALS} finished trials and none among the top)")


def refine_space(spec: StudySpec, study: optuna.Study) -> Refinement:
    """The refined search space for the study's next stage, with a reason for each entry."""
    from hpo.report.trials import ranked

    trials = study.get_trials(deepcopy=False)
    complete = ranked(study, trials)
    if len(complete) < MIN_COMPLETE:
        raise HpoError(f"study {study.study_name!r} has {len(complete)} completed trials; "
                       f"refining needs at least {MIN_COMPLETE} (run more trials first)")
    finished = [t for t in trials if t.state.is_finished() and t.state.name != "FAIL"]
    top = complete[:min(len(complete), max(TOP_MIN, math.ceil(TOP_FRACTION * len(complete))))]
    best = top[0]
    limits = limits_for(spec, study)
    edges = {w.param: w for w in edge_warnings(study, limits, trials)}
    importance = importances(study, len(complete))
    space: dict[str, dict[str, Any]] = {}
    comments: dict[str, str] = {}
    for name, entry in spec.search_space.items():
        values = [t.params[name] for t in top if name in t.params]
        if not values or name not in best.params:
            space[name] = entry_data(entry)
            comments[name] = f"{name}: unchanged (the best trial did not use it)"
            continue
        if isinstance(entry, CategoricalParam):
            space[name], comments[name] = _categorical(name, entry, values, finished)
        else:
            space[name], comments[name] = _numeric(
                name, entry, values, best.params[name], limits.get(name, (None, None)),
                edges.get(name), [t.params[name] for t in finished if name in t.params],
                limits.hard.get(name))
        if name in importance:
            comments[name] += f" (PED-ANOVA importance {importance[name]:.2f})"
        if entry.when:
            space[name]["when"] = {k: list(v) for k, v in entry.when.items()}
    prune_conditions(space, comments)
    if importance:
        shown = ", ".join(f"{n} {v:.2f}" for n, v in importance.items())
        source_importance = f"; PED-ANOVA importances (nothing is fixed by them): {shown}"
    else:
        source_importance = ""
    source = (f"refined from study {study.study_name!r}: {len(complete)} completed trials, "
              f"best {best.value:.6g} (trial {best.number}), top {len(top)} read"
              + source_importance)
    enqueue = {k: v for k, v in best.params.items() if k in space}
    return Refinement(space, comments, enqueue, source, study.study_name)


def prune_conditions(space: dict[str, dict[str, Any]], comments: dict[str, str]) -> None:
    """Cut `when:` lists to the parent's remaining choices; drop an entry left with none, or
    whose parent was dropped (it could never apply), until nothing more changes."""
    changed = True
    while changed:
        changed = False
        for name in list(space):
            when = space[name].get("when") or {}
            for parent, allowed in list(when.items()):
                kept = ([v for v in allowed if v in space[parent].get("choices", [])]
                        if parent in space else [])
                if not kept:
                    del space[name]
                    comments[name] = (f"{name}: dropped: it applies only when {parent} is "
                                      f"{allowed}, " + (f"and {parent} no longer takes "
                                                        "those values" if parent in space
                                                        else f"and {parent} was dropped"))
                    changed = True
                    break
                when[parent] = kept


def next_name(name: str) -> str:
    """`study` -> `study-stage2`; `study-stage2` -> `study-stage3`."""
    found = re.fullmatch(r"(.*)-stage(\d+)", name)
    if found:
        return f"{found.group(1)}-stage{int(found.group(2)) + 1}"
    return f"{name}-stage2"


def refined_file(spec: StudySpec, refinement: Refinement, name: str, out: Path,
                 storage_given: bool) -> str:
    """The next stage's study file: the old file's fields, a new name, the refined space,
    the best trial enqueued, the same storage, and a comment on every change."""
    import os

    import yaml

    from hpo.store.storage import resolve_storage_url, sqlite_path

    data = yaml.safe_load(spec.source.read_text())
    data["name"] = name
    carry = spec.sampler.type != "grid"  # a grid runs its own points (spec refuses carry)
    header = [f"# Written by `hpo refine {spec.source.name}`: {refinement.source}.",
              "# Each stage is its own Optuna study (changing ranges inside one study would "
              "break its plots);",
              f"# it starts with the finished trials of {refinement.parent!r} that lie inside "
              "this space (carry_from:)," if carry else
              "# its first trial re-runs the best of the last one.",
              "# as evidence for the sampler that does not count against n_trials." if carry
              else ""]
    header = [line for line in header if line]
    if storage_given:
        data.pop("storage", None)
        header.append("# Storage: run it with the same --storage or HPO_STORAGE as the last one.")
    else:
        url = resolve_storage_url(spec)
        path = sqlite_path(url)
        if path is not None:  # beside or below the new file: relative to it, as hpo reads it
            relative = os.path.relpath(path, out.absolute().parent)
            url = f"sqlite:///{path if relative.startswith('..') else relative}"
        data["storage"] = url
    if carry:
        data.pop("enqueue", None)  # the best is carried with the rest
        data["carry_from"] = refinement.parent
    else:
        data["enqueue"] = [refinement.enqueue]
    lines = list(header)
    for key, value in data.items():
        if key == "search_space":
            lines.append("search_space:")
            for entry_name, entry in refinement.space.items():
                lines.append(f"  # {refinement.comments.get(entry_name, entry_name)}")
                flow = yaml.safe_dump(entry, default_flow_style=True, sort_keys=False,
                                      width=10_000).strip()
                lines.append(f"  {entry_name}: {flow}")
            dropped = [n for n in refinement.comments if n not in refinement.space]
            lines += [f"  # {refinement.comments[n]}" for n in dropped]
        elif key == "enqueue":
            lines.append("# The best trial of the last stage, run first:")
            lines.append(yaml.safe_dump({key: value}, sort_keys=False,
                                        default_flow_style=False).rstrip())
        else:
            lines.append(yaml.safe_dump({key: value}, sort_keys=False,
                                        default_flow_style=False, width=10_000).rstrip())
    return "\n".join(lines) + "\n"
