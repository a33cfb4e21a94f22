"""`hpo lr-find`: the learning-rate range test, read as a range to search, over several seeds.

Each seed trains a fresh model while the learning rate rises exponentially, one step each,
and stops once the smoothed loss passes the study's divergence factor times its best. The
curve (a moving average of the losses, beta 0.9) is read against log(lr), where learning
rates live, for the learning rate that trains fastest without being unstable: the best
constant lr for a short run, which sits near the top of the fall, shortly before the loss
turns up.

The pick: the *fall* runs from the curve's highest point to its lowest, both looked for only
after the first `SETTLE_STEPS` steps (the average's memory: before it, the average holds a
few noisy batches, which is where steepest-slope picks land, as Lightning's finder does
without its `skip_begin`). The suggestion is the first lr at which the loss has made
`FALL_FRACTION` (90%) of that fall. A fraction of the whole fall takes a sustained one: noise
moves the average by a few hundredths, a real fall by most of the loss.

Why that point: against the best constant lr for the ramp's 100 steps, found exhaustively
(`reference`: each lr of a grid trained alone from the same model and batches;
`python benchmarks/lr_find.py`, 10 setups x 3 seeds), the lowest point of the curve lies at
0.5-13x the best, 56x on a curve that never turned up (instability shows late on the ramp,
later still with momentum or Adam),
fastai's `valley` (the middle of the longest falling stretch, a safe rate for a one-cycle
schedule) 3-60x below it, and the steepest slope anywhere from 1e5x below to 4x above. The 90%
point lies within 3x in 26 of the 30, geometric mean ratio 1.2. The fraction was chosen on
those runs with the default 100 steps, whose average lags about 9 steps (half a decade)
behind the losses; the lag is part of what it was calibrated with.

A decade below the suggestion is the range's low, and the lr of the lowest loss, past which
the loss turns up, its high, kept below where a seed diverged. The seeds' spread says how
far to trust one run's pick.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.wisdom.setup import describe, searched_lr, trainer_setup

if TYPE_CHECKING:
    from hpo.spec import StudySpec
    from hpo.training.probes import LrCurve, ReferenceSweep

STEPS = 100
SEEDS = 3
# The ramp starts a decade below the study's lr range (or at DEFAULT_START without one) and
# ends a decade above it, at DEFAULT_END at least: most setups diverge between 1 and 10.
DEFAULT_START, DEFAULT_END = 1e-7, 10.0
# The loss's moving average on the ramp. The divergence rule's 0.98 averages over ~50 steps,
# which on a 100-step ramp lags three decades of lr behind; 0.9 lags under one.
CURVE_SMOOTHING = 0.9
# Steps before the average holds its memory's worth of losses, 1 / (1 - CURVE_SMOOTHING):
# before then one noisy batch moves it most, so the pick ignores them.
SETTLE_STEPS = 10
# How much of the curve's fall the loss has made at the suggested lr (see the docstring).
FALL_FRACTION = 0.9
# The reference sweep's grid: learning rates per decade across the ramp's range.
REFERENCE_PER_DECADE = 4


@dataclass
class SeedPick:
    seed: int
    suggested: float  # the first lr at which the loss has made FALL_FRACTION of its fall
    minimum: float  # lr of the lowest smoothed loss
    diverged_at: float | None


@dataclass
class LrFind:
    low: float
    high: float
    suggested: float
    diverged_at: float | None  # the lowest lr at which a seed diverged
    seeds: list[SeedPick]
    curves: list[LrCurve] = field(repr=False)
    setup: str  # the fixed settings the ramp trained with
    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "low": _sig(self.low), "high": _sig(self.high), "suggested": _sig(self.suggested),
            "diverged_at": _sig(self.diverged_at) if self.diverged_at else None,
            # "steepest" is the old name of "suggested", kept for scripts that read it.
            "seeds": [{"seed": s.seed, "suggested": _sig(s.suggested),
                       "steepest": _sig(s.suggested), "minimum": _sig(s.minimum),
                       "diverged_at": _sig(s.diverged_at) if s.diverged_at else None}
                      for s in self.seeds],
        }

    def search_space_line(self) -> str:
        """The entry to paste under `search_space:`."""
        low, high = _sig(self.low), _sig(self.high)
        return f"lr: {{type: float, low: {low:g}, high: {high:g}, log: true}}"


def _sig(value: float) -> float:
    return float(f"{value:.2g}")


def ramp_range(spec: StudySpec) -> tuple[float, float]:
    """A decade past the study's lr range on each side (to 10 at least), or 1e-7 .. 10."""
    entry = searched_lr(spec)
    if entry is not None:
        return entry.low / 10, max(entry.high * 10, DEFAULT_END)
    return DEFAULT_START, DEFAULT_END


def pick(curve: LrCurve, seed: int) -> SeedPick:
    """The lr at which the smoothed loss has made most of its fall, and its lowest point."""
    if len(curve.lrs) < 5:
        raise HpoError(f"the loss diverged within {len(curve.lrs)} steps of the ramp (seed "
                       f"{seed}, lr {curve.lrs[-1] if curve.lrs else 0:g}); lower the start "
                       "(--start) or check the setup with `hpo check`")
    smoothed = curve.smoothed
    settled = min(SETTLE_STEPS, len(smoothed) // 2)
    lowest = min(range(settled, len(smoothed)), key=smoothed.__getitem__)
    # The fall starts at the highest point before the lowest: a rise first (Adam's early
    # spikes, a noisy start) is not part of it.
    top = max(range(settled, lowest + 1), key=smoothed.__getitem__)
    target = smoothed[top] - FALL_FRACTION * (smoothed[top] - smoothed[lowest])
    chosen = next(i for i in range(top, lowest + 1) if smoothed[i] <= target)
    return SeedPick(seed, curve.lrs[chosen], curve.lrs[lowest], curve.diverged_at)


def _geometric_mean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def find_lr(spec: StudySpec, overrides: dict[str, Any], seeds: int = SEEDS, steps: int = STEPS,
            start: float | None = None, end: float | None = None) -> LrFind:
    """The range test over `seeds` seeds (the file's train.seed onward) and the range it reads."""
    from hpo.training.probes import lr_curve

    setup = trainer_setup(spec, overrides, "lr-find")
    default_start, default_end = ramp_range(spec)
    start, end = start or default_start, end or default_end
    if not start < end:
        raise HpoError(f"--start {start:g} must be below --end {end:g}")
    factor = setup.divergence_factor
    curves, picks = [], []
    for offset in range(seeds):
        seed = setup.config.seed + offset
        curve = lr_curve(replace(setup.config, seed=seed), setup.data, start, end, steps, factor,
                         CURVE_SMOOTHING)
        curves.append(curve)
        picks.append(pick(curve, seed))
    suggested = _geometric_mean([p.suggested for p in picks])
    high = statistics.median(p.minimum for p in picks)
    diverged = [p.diverged_at for p in picks if p.diverged_at]
    diverged_at = min(diverged) if diverged else None
    if diverged_at is not None:
        high = min(high, diverged_at / 2)
    if suggested >= high:  # a curve that falls at its lowest point alone: stay below it
        suggested = high / 3
    return LrFind(low=suggested / 10, high=high, suggested=suggested, diverged_at=diverged_at,
                  seeds=picks, curves=curves, setup=describe(setup.config), start=start, end=end)


def reference(spec: StudySpec, overrides: dict[str, Any], seeds: int = SEEDS,
              steps: int = STEPS, per_decade: int = REFERENCE_PER_DECADE,
              threads: int | None = None) -> list[ReferenceSweep]:
    """What `find_lr` estimates, measured the slow way: per seed, each lr of a log grid
    across the ramp's range trained alone at that constant rate for `steps` steps.

    Each seed's sweep starts from the model and batch order that seed's ramp starts from, so
    `reference(...)[i].best` is the truth for `find_lr(...).seeds[i]`.
    """
    from hpo.training.probes import log_grid, reference_sweep

    setup = trainer_setup(spec, overrides, "lr-find")
    start, end = ramp_range(spec)
    lrs = log_grid(start, end, per_decade)
    config = setup.config if threads is None else replace(setup.config, threads=threads)
    return [reference_sweep(replace(config, seed=config.seed + offset), setup.data, lrs, steps,
                            setup.divergence_factor)
            for offset in range(seeds)]


def format_result(found: LrFind) -> str:
    seeds = ", ".join(f"{p.suggested:.2g}" for p in found.seeds)
    spread = max(p.suggested for p in found.seeds) / min(p.suggested for p in found.seeds)
    diverged = (f"diverged from lr {found.diverged_at:.2g}" if found.diverged_at
                else f"did not diverge up to lr {found.end:g} (the loss may still fall "
                     "beyond: try a larger --end)")
    return "\n".join([
        f"LR range test, {len(found.seeds)} seed{'s' if len(found.seeds) > 1 else ''}, "
        f"lr {found.start:g} .. {found.end:g} with "
        f"{found.setup}:",
        f"  {FALL_FRACTION:.0%} of the loss's fall made at lr {seeds} (spread x{spread:.1f}); "
        "lowest loss at lr "
        + ", ".join(f"{p.minimum:.2g}" for p in found.seeds) + f"; {diverged}",
        f"  suggested lr {found.suggested:.2g}; search {found.low:.2g} .. {found.high:.2g}",
        "Paste under search_space:",
        f"  {found.search_space_line()}",
    ])


PLOT_FORMATS = {".html": "html", ".htm": "html", ".png": "png"}  # --out's suffix: format


def write_plot(found: LrFind, out: Path) -> None:
    """The smoothed loss against lr (log axis), each seed, the suggested range shaded."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for curve, seed_pick in zip(found.curves, found.seeds, strict=True):
        figure.add_trace(go.Scatter(x=curve.lrs, y=curve.smoothed, mode="lines",
                                    name=f"seed {seed_pick.seed}"))
    # Marks are legend entries, not annotations: plotly misplaces annotations on a log axis.
    losses = [loss for curve in found.curves for loss in curve.smoothed]
    bottom, top = min(losses), max(losses)
    figure.add_trace(go.Scatter(
        x=[found.low, found.low, found.high, found.high, found.low],
        y=[bottom, top, top, bottom, bottom], fill="toself", fillcolor="rgba(0,128,0,0.12)",
        line={"width": 0}, mode="lines",
        name=f"search {found.low:.2g} .. {found.high:.2g}"))
    marks = [(found.suggested, f"suggested {found.suggested:.2g}", "green", "dash")]
    if found.diverged_at:
        marks.append((found.diverged_at, f"diverged at {found.diverged_at:.2g}", "red", "dot"))
    for x, name, color, dash in marks:
        figure.add_trace(go.Scatter(x=[x, x], y=[bottom, top], mode="lines", name=name,
                                    line={"color": color, "dash": dash}))
    figure.update_layout(title=f"LR range test<br><sup>{found.setup}</sup>",
                         xaxis_title="learning rate", yaxis_title="training loss (smoothed)",
                         xaxis_type="log")
    # Rendered first, then written: an OSError here is the file's (a full disk), not
    # plotly's, and the caller names --out for it.
    if plot_format(out) == "png":
        try:
            image = figure.to_image(format="png")
        except Exception as e:  # plotly needs kaleido and a browser to render images
            raise HpoError(f"cannot write {out} ({str(e).splitlines()[0]}); install kaleido "
                           "(pip install kaleido) or write an .html plot") from e
        out.write_bytes(image)
    else:
        out.write_text(figure.to_html(include_plotlyjs=True), encoding="utf-8")


def plot_format(out: Path) -> str:
    """The plot's format by `out`'s suffix, html or png; checked before the range test runs."""
    if out.suffix.lower() not in PLOT_FORMATS:
        raise HpoError(f"--out {out}: write a .html or .png file")
    return PLOT_FORMATS[out.suffix.lower()]
