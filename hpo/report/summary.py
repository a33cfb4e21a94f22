"""A study in brief, as data and as text: counts, best trials, edge warnings, its note."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.report.edges import Limits, edge_warnings
from hpo.report.trials import STATE_ORDER, diverged, metric_name, ranked, state_counts
from hpo.store.carry import CARRIED_FROM, is_carried

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def summarize(study: optuna.Study, top: int = 5, limits: Limits | None = None
              ) -> dict[str, Any]:
    """The study in brief: counts, divergences, time spent, best and top trials, and the
    entries whose best sits at an edge of their range (`limits`: see `hpo.report.edges`)."""
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
