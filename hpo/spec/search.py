"""The sampler and pruner sections, and what each sampler cannot serve."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from hpo.spec.base import Problems, Strict
from hpo.spec.space import conditional_entries, searched_categoricals
from hpo.training.divergence import DEFAULT_FACTOR

# hpo.search.samplers.SAMPLERS makes each; `check_sampler` refuses what one cannot serve.
SamplerName = Literal["tpe", "random", "grid", "gp", "cmaes", "qmc", "auto"]
TPE_OPTIONS = ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar")


class SamplerSpec(Strict):
    type: SamplerName = "tpe"
    seed: int | None = None
    # TPE's own options, passed through to optuna.samplers.TPESampler.
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_ei_candidates: int | None = Field(default=None, ge=1)
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None

    @model_validator(mode="after")
    def _tpe_options_need_tpe(self) -> SamplerSpec:
        if self.type != "tpe":
            for option in TPE_OPTIONS:
                if getattr(self, option) is not None:
                    raise ValueError(f"{option} is a TPE option; it needs type: tpe")
        return self

    def options(self) -> dict[str, Any]:
        """The TPE options the file sets, as keyword arguments."""
        return {k: getattr(self, k) for k in TPE_OPTIONS if getattr(self, k) is not None}


EarlyName = Literal["median", "percentile", "successive_halving", "hyperband", "none"]

# Which option each early-stopping pruner takes; each maps to the Optuna pruner's argument.
EARLY_OPTIONS: dict[str, tuple[str, ...]] = {
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "percentile": (
        "percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials",
    ),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "none": (),
}


class EarlySpec(Strict):
    type: EarlyName
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_warmup_steps: int | None = Field(default=None, ge=0)
    interval_steps: int | None = Field(default=None, ge=1)
    n_min_trials: int | None = Field(default=None, ge=1)
    percentile: float | None = Field(default=None, ge=0, le=100)
    min_resource: int | Literal["auto"] | None = None
    max_resource: int | Literal["auto"] | None = None
    reduction_factor: int | None = Field(default=None, ge=2)
    min_early_stopping_rate: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _options_fit_type(self) -> EarlySpec:
        allowed = EARLY_OPTIONS[self.type]
        for option in self.options():
            if option not in allowed:
                fits = [name for name, opts in EARLY_OPTIONS.items() if option in opts]
                raise ValueError(f"{option} does not apply to {self.type}; it is for {fits[0]}")
        if self.type == "percentile" and self.percentile is None:
            raise ValueError("percentile needs a percentile value, e.g. percentile: 25.0")
        return self

    def options(self) -> dict[str, Any]:
        """The options the file sets, as keyword arguments of the Optuna pruner."""
        names = [n for n in type(self).model_fields if n != "type"]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class DivergenceSpec(Strict):
    # Stop a trial whose cost exceeds factor x its original cost ("exceeds": exactly 3x goes on).
    factor: float = Field(default=DEFAULT_FACTOR, gt=1.0)


class PrunerSpec(Strict):
    # `divergence: false` turns the rule off; `true` keeps the default factor.
    divergence: DivergenceSpec | Literal[False] = DivergenceSpec()
    early: EarlySpec | None = None

    @field_validator("divergence", mode="before")
    @classmethod
    def _true_is_default(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is not False and not isinstance(value, dict):
            raise ValueError(f"give a mapping such as {{factor: 3.0}}, or false; got {value!r}")
        return value


def auto_needs_tpe(space: dict[str, Any]) -> str | None:
    """Why sampler type auto runs TPE throughout, or None when it starts with GP: GP models
    numbers, TPE categorical and conditional entries (the rule of Optuna's AutoSampler)."""
    # A conditional entry hangs off a categorical one with choices (conditional_entries), so
    # that one is named.
    categorical = searched_categoricals(space)
    if not categorical:
        return None
    conditional = conditional_entries(space)
    also = f", {conditional[0]} conditional" if conditional else ""
    return f"search_space.{categorical[0]} is categorical{also}"


# What a sampler type needs beyond hpo's base dependencies, and how to get it.
# (cmaes and scipy, which cmaes and qmc need, are hpo's own dependencies.)
SAMPLER_PACKAGES = {"gp": ("torch",)}
INSTALL_HINTS = {
    "torch": "install torch as the README says (pip install 'hpo[train]' after it)",
}


def check_sampler(kind: str, space: dict[str, Any], problems: Problems) -> None:
    """What the chosen sampler cannot serve, one line each with the fix."""
    if kind in ("gp", "cmaes"):
        # Optuna's GP and CMA-ES model the entries every trial has; they draw the others at
        # random, outside the model. (qmc takes a conditional entry's coordinate of the
        # trial's Sobol point, see hpo.search.samplers._Sobol, so it serves them.)
        for name in conditional_entries(space):
            problems.append(f"search_space.{name}.when: the {kind} sampler cannot model "
                            "conditional entries (Optuna draws them at random); use sampler "
                            "type tpe or auto, or drop when:")
    if kind == "cmaes":
        for name in searched_categoricals(space):
            problems.append(f"search_space.{name}: the cmaes sampler cannot model categorical "
                            f"entries (Optuna draws choices {space[name].choices} at random); "
                            "use sampler type gp, tpe or auto")
    _check_sampler_packages(kind, space, problems)


def _check_sampler_packages(kind: str, space: dict[str, Any], problems: Problems) -> None:
    import importlib.util

    uses_gp = kind == "auto" and auto_needs_tpe(space) is None
    for package in SAMPLER_PACKAGES.get("gp" if uses_gp else kind, ()):
        try:
            found = importlib.util.find_spec(package) is not None
        except ValueError:  # a module without a spec stands in for it
            found = False
        if not found:
            needs = "runs GP on this all-numeric space, which needs" if uses_gp else "needs"
            problems.append(f"sampler.type: {kind} {needs} {package}, which is not installed; "
                            f"{INSTALL_HINTS[package]}, or use sampler type tpe")
