"""What a study holds, as data and as text: counts by state, best trials, exports."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from hpo import jsonout
from hpo.carry import CARRIED_FROM, is_carried
from hpo.divergence import DIVERGED
from hpo.wisdom.edges import Limits, edge_warnings

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def diverged(trial: FrozenTrial) -> bool:
    """Whether the divergence rule stopped the trial (its `prune_reason` says so)."""
    return str(trial.user_attrs.get("prune_reason", "")).startswith(DIVERGED)


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each state, every state listed."""
    counts = dict.fromkeys(STATE_ORDER, 0)
    for trial in trials:
        counts[trial.state.name] += 1
    return counts


def metric_name(study: optuna.Study) -> str:
    """The metric the study's spec names, or `value` for a study hpo did not create."""
    return study.user_attrs.get("hpo_spec", {}).get("metric", "value")


def ranked(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials, best first."""
    from optuna.study import StudyDirection

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    maximize = study.direction == StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: (-t.value if maximize else t.value, t.number))


def summarize(study: optuna.Study, top: int = 5, limits: Limits | None = None
              ) -> dict[str, Any]:
    """The study in brief: counts, divergences, time spent, best and top trials, and the
    entries whose best sits at an edge of their range (`limits`: see `hpo.wisdom.edges`)."""
    trials = study.get_trials(deepcopy=False)
    best = ranked(study, trials)  # carried trials too: the best so far may be one of them
    carried = [t for t in trials if is_carried(t)]
    # Counts and time are the study's own: carried trials are evidence its sampler started
    # from, run (and counted) in the study they came from.
    own = [t for t in trials if not is_carried(t)]
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "metric": metric_name(study),
        "counts": state_counts(own),
        "carried": ({"count": len(carried), "from": carried_from(carried)} if carried
                    else None),
        "diverged": sum(1 for t in own if diverged(t)),
        "trial_seconds": round(sum(float(t.user_attrs.get("duration_s", 0)) for t in own), 3),
        "best": _trial_brief(best[0]) if best else None,
        "top": [_trial_brief(t) for t in best[:top]],
        "edge_warnings": [w.as_dict() for w in edge_warnings(study, limits, trials)],
    }


def carried_from(trials: list[FrozenTrial]) -> list[str]:
    """The studies carried trials came from, in order."""
    return list(dict.fromkeys(t.user_attrs[CARRIED_FROM]["study"] for t in trials))


def carried_text(carried: dict[str, Any]) -> str:
    """`23 carried over from 'coarse'`."""
    return (f"{carried['count']} carried over from "
            + ", ".join(map(repr, carried["from"])))


def _trial_brief(trial: FrozenTrial) -> dict[str, Any]:
    brief = {"number": trial.number, "value": trial.value, "params": trial.params}
    if is_carried(trial):
        brief["carried_from"] = trial.user_attrs[CARRIED_FROM]
    return brief


def format_counts(counts: dict[str, int], carried: dict[str, Any] | None = None) -> str:
    """`28 complete, 2 pruned, plus 23 carried over from 'coarse'`."""
    text = ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if n) or "no trials"
    if carried:
        text += f", plus {carried_text(carried)}"
    return text


def trial_label(brief: dict[str, Any]) -> str:
    """`trial 12`, or `trial 3, carried over from 'coarse' #17`."""
    origin = brief.get("carried_from")
    if origin is None:
        return f"trial {brief['number']}"
    return f"trial {brief['number']}, carried over from {origin['study']!r} #{origin['number']}"


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for a person: counts, best trial, where to look next."""
    lines = [f"Study {summary['study']!r}: "
             f"{format_counts(summary['counts'], summary.get('carried'))}"
             + (f" ({summary['diverged']} diverged)" if summary["diverged"] else "")]
    best = summary["best"]
    if best:
        params = ", ".join(f"{k}={short(v)}" for k, v in best["params"].items())
        lines.append(
            f"Best {summary['metric']} = {best['value']:.6g} ({trial_label(best)}): {params}"
        )
    else:
        lines.append("No completed trial yet.")
    lines += [f"Edge warning, {w['param']}: {w['suggestion']}"
              for w in summary.get("edge_warnings", [])]
    return "\n".join(lines)


def ran_line(outcomes: dict[str, int], how: str, seconds: float, where: str) -> str:
    """`Ran 12 trials with 2 workers in 30.1 s (10 complete, 2 pruned); stored in URL`: the
    trials this command's workers ran to an end, whatever other workers did meanwhile."""
    total = sum(outcomes.values())
    counts = {state: outcomes[state] for state in STATE_ORDER if outcomes.get(state)}
    detail = f" ({format_counts(counts)})" if counts else ""
    return (f"Ran {total} trial{'' if total == 1 else 's'}{how} in {seconds:.1f} s{detail}; "
            f"stored in {where}")


def format_table(summary: dict[str, Any]) -> str:
    """The top trials as an aligned text table."""
    rows = summary["top"]
    if not rows:
        return ""
    names = list(dict.fromkeys(k for row in rows for k in row["params"]))
    header = ["trial", summary["metric"], *names]
    # A carried trial's number is marked; the line below the table says what the mark means.
    body = [
        [str(r["number"]) + ("*" if "carried_from" in r else ""), f"{r['value']:.6g}",
         *(short(r["params"].get(n, "")) for n in names)]
        for r in rows
    ]
    table = aligned([header, *body])
    if any("carried_from" in r for r in rows):
        table += "\n* carried over from " + ", ".join(map(repr, summary["carried"]["from"]))
    return table


def aligned(rows: list[list[str]]) -> str:
    """Rows of cells as a text table, each column as wide as its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def short(value: Any) -> str:
    """A value as a person reads it in a table: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial as plain data: number, state, value, params, user attrs, duration."""
    records = []
    for t in study.get_trials(deepcopy=False):
        duration = t.duration.total_seconds() if t.duration is not None else None
        records.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            "duration_s": duration,
            "params": dict(t.params),
            "user_attrs": dict(t.user_attrs),
            "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        })
    return records


def to_json(records: list[dict[str, Any]]) -> str:
    return jsonout.dumps(records) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One row a trial; params and user attrs become `params.NAME` / `user_attrs.NAME` columns."""
    params = list(dict.fromkeys(k for r in records for k in r["params"]))
    attrs = list(dict.fromkeys(k for r in records for k in r["user_attrs"]))
    fixed = ["number", "state", "value", "datetime_start", "datetime_complete", "duration_s"]
    out = io.StringIO()
    writer = csv.writer(out)
    header = [*fixed, *(f"params.{p}" for p in params), *(f"user_attrs.{a}" for a in attrs)]
    writer.writerow(header)
    for r in records:
        attr_cells = [_cell(r["user_attrs"].get(a)) for a in attrs]
        writer.writerow([*(_cell(r[k]) for k in fixed),
                         *(_cell(r["params"].get(p)) for p in params), *attr_cells])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(jsonout.finite(value))
    return value


def study_note(summary: dict[str, Any], spec_data: dict[str, Any], spec_path: str,
               storage_url: str) -> str:
    """The study's Markdown note for optuna-dashboard: results, how to reproduce, the spec."""
    import yaml

    best = summary["best"]
    lines = [f"# {summary['study']}", ""]
    if best:
        params = ", ".join(f"`{k}={short(v)}`" for k, v in best["params"].items())
        lines.append(f"**Best {summary['metric']}**: {best['value']:.6g} "
                     f"({trial_label(best)}) with {params}")
    else:
        lines.append("**No completed trial yet.**")
    hours, rest = divmod(int(summary["trial_seconds"]), 3600)
    lines += [
        "",
        f"**Trials**: {format_counts(summary['counts'], summary.get('carried'))}; "
        f"**diverged**: {summary['diverged']}; "
        f"**time in trials**: {hours}h {rest // 60:02d}m {rest % 60:02d}s",
        "",
        *_edge_section(summary.get("edge_warnings", [])),
        "## Reproduce",
        "",
        "```bash",
        f"hpo run {spec_path} --storage '{storage_url}'",
        "```",
        "",
        "## Study file as run",
        "",
        "```yaml",
        yaml.safe_dump(spec_data, sort_keys=False).rstrip(),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _edge_section(warnings: list[dict[str, Any]]) -> list[str]:
    if not warnings:
        return []
    lines = ["## Edge warnings", ""]
    lines += [f"- **{w['param']}** ({w['edge']} edge): {w['suggestion']}" for w in warnings]
    return [*lines, ""]
