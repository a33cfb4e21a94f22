"""`hpo check`: babysitting a training setup before a search spends compute on it.

The checks of TRAINING.md's "Babysitting a run", on the built-in trainer with the study
file's fixed values: the loss before any update, learning a tiny subset by heart, how the
loss moves across the study's learning-rate range, and whether the inputs matter at all.
Each gives pass, warn or fail with what it measured, what it expected and what to fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from hpo.spec import CategoricalParam
from hpo.wisdom.setup import describe, searched_lr, trainer_setup

if TYPE_CHECKING:
    from hpo.spec import StudySpec
    from hpo.wisdom.setup import TrainerSetup

PASS, WARN, FAIL = "pass", "warn", "fail"

# initial_loss: "well outside" ln C means beyond these factors of it.
INITIAL_LOSS_HIGH = 1.5
INITIAL_LOSS_LOW = 0.5
# overfit_tiny: examples, full-batch steps of Adam at this lr, and the loss that counts as zero.
TINY_EXAMPLES = 20
TINY_STEPS = 300
TINY_LR = 1e-3
TINY_LOSS = 0.05
# lr_sweep: learning rates tried, steps each, and the relative fall that counts as moving.
SWEEP_POINTS = 5
SWEEP_STEPS = 60
BARELY_MOVES = 0.05
# zero_input: steps trained on real and on zeroed inputs; real must beat zero by this factor.
ZERO_STEPS = 100
ZERO_MARGIN = 0.9


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    measured: Any
    expected: str
    hint: str | None  # what to fix; None when it passed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_checks(spec: StudySpec, overrides: dict[str, Any]) -> tuple[list[Check], str]:
    """Every check, in order, and the one-line description of the setup they trained."""
    setup = trainer_setup(spec, overrides, "check")
    checks = [initial_loss(spec, setup), overfit_tiny(setup), lr_sweep(spec, setup),
              zero_input(setup)]
    return checks, describe(setup.config)


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 when something did."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def initial_loss(spec: StudySpec, setup: TrainerSetup) -> Check:
    """The loss before any update against ln C; every searched initializer is tried too."""
    from hpo.training import probes

    data = setup.data
    expected = math.log(data.n_classes)
    entropy = probes.label_entropy(data.y_train)
    low, high = INITIAL_LOSS_LOW * min(entropy, expected), INITIAL_LOSS_HIGH * expected
    initializers = [setup.config.initializer]
    searched = spec.search_space.get("initializer")
    if isinstance(searched, CategoricalParam) and "initializer" not in setup.params:
        initializers += [c for c in searched.choices if c not in initializers]
    losses = {name: probes.initial_loss(replace(setup.config, initializer=name), data)
              for name in initializers}
    worst = max(losses, key=lambda name: abs(math.log(max(losses[name], 1e-12) / expected)))
    measured = losses[worst]
    if entropy < 0.95 * expected:
        wanted = (f"between {low:.3g} and {high:.3g}: near ln {data.n_classes} = {expected:.3f} "
                  f"(classes are imbalanced: label entropy {entropy:.3f})")
    else:
        wanted = f"near ln {data.n_classes} = {expected:.3f} (between {low:.3g} and {high:.3g})"
    if low <= measured <= high and math.isfinite(measured):
        return Check("initial_loss", PASS, _round(measured), wanted, None)
    which = (f"initializer {worst}" + (" (searched)" if worst != setup.config.initializer
                                       else ""))
    hint = (f"{which} starts at loss {measured:.4g}: an untrained classifier should predict "
            "about uniformly. Its weights are too large for this network (try he_normal for "
            "relu, xavier_uniform for tanh, or batch_norm: true), or the inputs are not "
            "scaled (data.normalize: standard)")
    if len(losses) > 1:
        others = ", ".join(f"{n} {v:.3g}" for n, v in losses.items())
        hint += f"; by initializer: {others}"
    return Check("initial_loss", WARN, _round(measured), wanted, hint)


def overfit_tiny(setup: TrainerSetup) -> Check:
    """A model that cannot learn 20 examples by heart has broken labels, features or code."""
    from hpo.training import probes

    data = setup.data
    index = probes.tiny_subset(data.y_train, TINY_EXAMPLES, setup.config.seed)
    config = replace(probes.unregularized(setup.config), optimizer="adam", lr=TINY_LR,
                     batch_size=len(index), grad_clip=None)
    run = probes.short_run(config, data.x_train[index], data.y_train[index], data, TINY_STEPS)
    final = run.losses[-1]
    wanted = (f"training loss below {TINY_LOSS} or 100% accuracy on {len(index)} examples "
              f"after {TINY_STEPS} full-batch steps of adam (lr {TINY_LR:g}), regularization off")
    measured = _round(final)
    if final < TINY_LOSS or run.accuracy == 1.0:
        return Check("overfit_tiny", PASS, measured, wanted, None)
    hint = (f"the model reached only {run.accuracy:.0%} accuracy on {len(index)} training "
            "examples: check that labels match their rows, that the features vary (a constant "
            "or all-NaN column carries nothing) and the normalization; a network too small "
            "(hidden) or an initializer that stalls it (zeros) fail here too")
    return Check("overfit_tiny", FAIL, measured, wanted, hint)


def _sweep_lrs(spec: StudySpec, setup: TrainerSetup) -> tuple[list[float], str]:
    entry = searched_lr(spec)
    if entry is not None:
        low, high, source = entry.low, entry.high, "search_space.lr"
    else:
        low, high, source = setup.config.lr / 100, setup.config.lr * 100, "the fixed lr x/÷ 100"
    ratio = (high / low) ** (1 / (SWEEP_POINTS - 1))
    return [low * ratio ** i for i in range(SWEEP_POINTS)], f"{source}: {low:g} .. {high:g}"


def lr_sweep(spec: StudySpec, setup: TrainerSetup) -> Check:
    """Short runs across the lr range: barely moving at the bottom, exploding at the top."""
    from hpo.training import probes

    factor = setup.divergence_factor
    lrs, where = _sweep_lrs(spec, setup)
    data = setup.data
    measured: list[dict[str, Any]] = []
    for lr in lrs:
        run = probes.short_run(replace(setup.config, lr=lr), data.x_train, data.y_train, data,
                               SWEEP_STEPS, factor)
        first, last = run.losses[0], sum(run.losses[-10:]) / len(run.losses[-10:])
        measured.append({
            "lr": float(f"{lr:.4g}"),
            "loss_change": None if run.diverged else _round((last - first) / first),
            "diverged": run.diverged is not None,
        })
    exploded = [m for m in measured if m["diverged"]]
    wanted = (f"over {where} ({SWEEP_STEPS} steps each, {setup.config.optimizer}): the loss "
              f"barely moves at the bottom and diverges ({factor:g}x rule) at the top")
    if not exploded:
        hint = (f"nothing diverged up to lr {lrs[-1]:g}: the range may stop short of where "
                "training becomes unstable, so the search cannot see the wall; raise "
                "search_space.lr.high, or run `hpo lr-find` to see where it is")
        return Check("lr_sweep", WARN, measured, wanted, hint)
    if len(exploded) == len(measured):
        hint = (f"every lr diverged, even {lrs[0]:g}: the range is too high (lower "
                "search_space.lr), or the setup explodes at any lr (see initial_loss)")
        return Check("lr_sweep", WARN, measured, wanted, hint)
    bottom = measured[0]["loss_change"]
    if bottom is not None and bottom < -0.5:
        hint = (f"the bottom of the range already trains fast (loss {bottom:+.0%} in "
                f"{SWEEP_STEPS} steps at lr {lrs[0]:g}): a lower low may hold better values")
        return Check("lr_sweep", PASS, measured, wanted, hint)
    return Check("lr_sweep", PASS, measured, wanted, None)


def zero_input(setup: TrainerSetup) -> Check:
    """Inputs set to zero must do worse than the real ones, or the model ignores them."""
    from hpo.training import probes

    data = setup.data
    config = replace(probes.unregularized(setup.config), optimizer="adam", lr=TINY_LR)
    losses = {}
    for kind, scale in (("real", 1.0), ("zero", 0.0)):
        x_train, x_val = data.x_train * scale, data.x_val * scale
        run = probes.short_run(config, x_train, data.y_train, data, ZERO_STEPS)
        losses[kind] = probes.loss_on(run.model, x_val, data.y_val)
    real, zero = losses["real"], losses["zero"]
    wanted = (f"validation loss with real inputs below {ZERO_MARGIN:g}x the loss with zeroed "
              f"inputs ({zero:.3g}) after {ZERO_STEPS} steps of adam (lr {TINY_LR:g})")
    if real < ZERO_MARGIN * zero:
        return Check("zero_input", PASS, _round(real), wanted, None)
    hint = ("the model learns as much from zeros as from the data: the features carry no "
            "signal the model can use (constant columns, labels shuffled against rows, or a "
            "broken normalization)")
    return Check("zero_input", FAIL, _round(real), wanted, hint)


def _round(value: float) -> float | None:
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _change(sweep_point: dict[str, Any]) -> str:
    if sweep_point["diverged"]:
        return "diverged"
    change = f"{sweep_point['loss_change']:+.0%}"
    return "±0%" if change in ("+0%", "-0%") else change


def format_checks(checks: list[Check], setup_line: str) -> str:
    """The checks for a person: one line each, then what was expected and what to fix."""
    lines = [f"Checks with {setup_line}:"]
    for check in checks:
        measured = check.measured
        if check.name == "lr_sweep":
            measured = ", ".join(f"{m['lr']:g} " + _change(m) for m in check.measured)
        lines.append(f"  {check.status.upper():4}  {check.name}: {measured}")
        lines.append(f"        expected {check.expected}")
        if check.hint:
            lines.append(f"        hint: {check.hint}")
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    verdict = ("something is broken: fix " + ", ".join(failed) + " before searching" if failed
               else "ready to search" + (f" (read the warnings: {', '.join(warned)})"
                                         if warned else ""))
    lines.append(verdict)
    return "\n".join(lines)
