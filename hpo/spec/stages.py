"""The stages section of a staged study, and each stage's study name."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hpo.spec.base import Choice, Strict


class StageSpec(Strict):
    # One stage of a staged study: its own Optuna study, `<study name>-<stage name>`.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    n_trials: int = Field(ge=1)
    # The search_space entries searched in this stage (default: all of them). An entry
    # searched in the stage before is refined from that stage's top trials; one searched
    # before but not now is fixed at the best value so far.
    params: list[str] | None = None
    fixed: dict[str, Choice] = {}  # entries held at a value in this stage
    train: dict[str, Any] = {}  # the built-in trainer's train settings for this stage


def stage_study_name(study_name: str, stage: StageSpec) -> str:
    """The Optuna study that runs `stage` of the staged study named `study_name`."""
    return f"{study_name}-{stage.name}"


# The fewest trials a stage that the next one is refined from may have (hpo.wisdom.refine).
MIN_TRIALS_TO_REFINE = 5
