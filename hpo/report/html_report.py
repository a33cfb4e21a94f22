"""`hpo report`: one self-contained HTML page of a whole search, readable offline."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo.report.edges import Limits
from hpo.report.summary import carried_from, carried_text, format_counts, short, summarize
from hpo.report.trials import diverged, metric_name, ranked
from hpo.store.carry import is_carried

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

# Element ids of the figures, in page order; tests and readers look for these.
FIGURES = (
    "optimization-history", "param-importances", "parallel-coordinate", "slice",
    "learning-curves",
)
CURVE_STYLE = {  # how each kind of trial is drawn in the learning curves
    "complete": {"color": "#1f77b4", "dash": "solid"},
    "pruned": {"color": "#ff7f0e", "dash": "dot"},
    "diverged": {"color": "#d62728", "dash": "dash"},
}


def _kind(trial: optuna.trial.FrozenTrial) -> str | None:
    if trial.state == TrialState.COMPLETE:
        return "complete"
    if trial.state == TrialState.PRUNED:
        return "diverged" if diverged(trial) else "pruned"
    return None


def learning_curves(study: optuna.Study) -> go.Figure:
    """Every trial's reported values by step: complete, early-stopped and diverged apart."""
    import plotly.graph_objects as go

    figure = go.Figure()
    shown: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        kind = _kind(trial)
        if kind is None or not trial.intermediate_values:
            continue
        steps = sorted(trial.intermediate_values)
        style = CURVE_STYLE[kind]
        figure.add_trace(go.Scatter(
            x=steps, y=[trial.intermediate_values[s] for s in steps], mode="lines+markers",
            name=kind, legendgroup=kind, showlegend=kind not in shown,
            line={"color": style["color"], "dash": style["dash"], "width": 1},
            marker={"size": 3},
            hovertext=f"trial {trial.number} ({kind})"
                      + (f": {trial.user_attrs['prune_reason']}"
                         if "prune_reason" in trial.user_attrs else ""),
        ))
        shown.add(kind)
    figure.update_layout(title="Learning curves", xaxis_title="step",
                         yaxis_title=metric_name(study))
    return figure


def figures(study: optuna.Study) -> dict[str, go.Figure | None]:
    """The report's figures by id; None where the study has too little to draw it."""
    from optuna import visualization as vis

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    enough = len(complete) >= 2 and bool(study.best_trial.params) if complete else False
    return {
        "optimization-history": vis.plot_optimization_history(study) if complete else None,
        "param-importances": vis.plot_param_importances(study) if enough else None,
        "parallel-coordinate": vis.plot_parallel_coordinate(study) if enough else None,
        "slice": vis.plot_slice(study) if enough else None,
        "learning-curves": learning_curves(study),
    }


def _table(study: optuna.Study, top: int) -> str:
    best = ranked(study, study.get_trials(deepcopy=False))[:top]
    if not best:
        return "<p>No completed trial yet.</p>"
    names = list(dict.fromkeys(k for t in best for k in t.params))
    head = "".join(f"<th>{html.escape(h)}</th>"
                   for h in ["trial", metric_name(study), *names])
    cells = [[f"{t.number}*" if is_carried(t) else t.number, f"{t.value:.6g}",
              *(short(t.params.get(n, "")) for n in names)] for t in best]
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in cells)
    carried = [t for t in best if is_carried(t)]
    note = (f"<p>* carried over from {html.escape(', '.join(map(repr, carried_from(carried))))}"
            "</p>" if carried else "")
    return f'<table id="best-trials"><tr>{head}</tr>{rows}</table>{note}'


def _edge_warnings(warnings: list[dict]) -> str:
    if not warnings:
        return '<p id="edge-warnings">No best value sits at the edge of its range.</p>'
    items = "".join(f"<li><b>{html.escape(w['param'])}</b> ({w['edge']} edge): "
                    f"{html.escape(w['suggestion'])}</li>" for w in warnings)
    return f'<ul id="edge-warnings">{items}</ul>'


def render(study: optuna.Study, top: int = 10, limits: Limits | None = None
           ) -> tuple[str, dict[str, go.Figure | None]]:
    """The report page, plotly.js inlined, and the figures it shows."""
    summary = summarize(study, top=top, limits=limits)
    drawn = figures(study)
    parts, inlined = [], False
    for figure_id, figure in drawn.items():
        if figure is None:
            parts.append(f'<div id="{figure_id}" class="figure empty">'
                         f"{figure_id.replace('-', ' ')}: needs at least two completed trials"
                         "</div>")
            continue
        parts.append(figure.to_html(full_html=False, include_plotlyjs=not inlined,
                                    div_id=figure_id))
        inlined = True
    counts = "".join(f"<li>{state.lower()}: {n}</li>" for state, n in summary["counts"].items())
    if summary["carried"]:
        counts += f"<li>{html.escape(carried_text(summary['carried']))}</li>"
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hpo report: {html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
.figure.empty{{color:#888;padding:1em;border:1px dashed #ccc;margin:1em 0}}</style></head>
<body>
<h1>{html.escape(study.study_name)}</h1>
<p>{html.escape(summary['direction'])} {html.escape(summary['metric'])};
{html.escape(format_counts(summary['counts'], summary['carried']))};
{summary['diverged']} diverged</p>
<h2>Counts by state</h2><ul id="counts">{counts}</ul>
<h2>Best trials</h2>{_table(study, top)}
<h2>Edge warnings</h2>{_edge_warnings(summary["edge_warnings"])}
<h2>Figures</h2>
{''.join(parts)}
</body></html>
"""
    return page, drawn


def write_report(study: optuna.Study, out: Path, png: bool = False, top: int = 10,
                 limits: Limits | None = None) -> list[Path]:
    """Write the HTML report (and, with `png`, each figure as an image); returns the files.

    Each file is rendered before it is written, so an OSError is a write's (a full disk)."""
    page, drawn = render(study, top=top, limits=limits)
    out.write_text(page, encoding="utf-8")
    written = [out]
    if png:
        for figure_id, figure in drawn.items():
            if figure is None:
                continue
            image = out.with_name(f"{out.stem}-{figure_id}.png")
            try:
                data = figure.to_image(format="png")
            except Exception as e:  # plotly needs kaleido and a browser to render images
                from hpo.errors import HpoError

                raise HpoError(f"wrote {out}, but cannot render PNG images ({e}); install "
                               "kaleido (pip install kaleido) or use the HTML") from e
            image.write_bytes(data)
            written.append(image)
    return written
