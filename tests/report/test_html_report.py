from __future__ import annotations

import re

from hpo.report.html_report import FIGURES
from tests.conftest import cli, write_study
from tests.report.test_dashboard import MIXED, STUDY, mixed_study


def test_report_has_every_figure_and_works_offline(tmp_path):
    path = write_study(tmp_path, STUDY.format(n=10, sampler="random",
                                              choices="[ok, ok, prune, diverge, fail]")
                       .replace("[ok, ok,", "[ok, again,")
                       + "  sleep: {type: float, low: 0.0, high: 0.01}\n", objective=MIXED)
    assert cli("run", path, "-q").exit_code == 0
    out = tmp_path / "report.html"
    result = cli("report", "--storage", f"sqlite:///{tmp_path}/board.db", "--study", "board",
                 "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    for figure_id in FIGURES:
        assert re.search(rf'<div id="{figure_id}" class="plotly-graph-div"', page), figure_id
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js is inlined, no CDN
    assert page.count("Plotly.newPlot") == len(FIGURES)
    assert '<table id="best-trials">' in page
    assert re.search(r'<ul id="counts"><li>complete: \d+</li><li>pruned: \d+</li>', page)


def test_learning_curves_tell_diverged_from_pruned(tmp_path):
    from hpo.report.html_report import learning_curves
    from tests.conftest import load

    path = mixed_study(tmp_path)
    figure = learning_curves(load(path, "board"))
    by_name = {trace.name: trace for trace in figure.data}
    assert set(by_name) == {"complete", "pruned", "diverged"}
    assert by_name["diverged"].line.dash != by_name["pruned"].line.dash
    assert by_name["diverged"].line.color != by_name["pruned"].line.color
    assert list(by_name["diverged"].y) == [1.0, 6.0]
    assert "diverged: cost 6" in by_name["diverged"].hovertext


def test_png_without_a_renderer_is_one_clear_line(tmp_path):
    path = mixed_study(tmp_path)
    out = tmp_path / "report.html"
    result = cli("report", path, "--out", out, "--png")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        assert result.exit_code == 1
        assert f"wrote {out}, but cannot render PNG images" in result.output
        assert out.exists()
    else:
        assert result.exit_code == 0
        assert (tmp_path / "report-learning-curves.png").exists()
