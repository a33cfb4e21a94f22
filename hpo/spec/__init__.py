"""The study file: pydantic models of study.yaml and `load_spec`, where all validation happens.

Modules, each importing only those before it: `base` (the strict section model, problems,
hints), `limits` (the built-in trainer's limits, one table: what each parameter can take and
where a search of it stops), `space` (search-space entries), `search` (sampler and pruner),
`trainer` (the objective and the built-in trainer), `describe` (validation errors in words),
`stages`, `study` (StudySpec, checks across sections) and `loading` (YAML to a StudySpec).
Beside them, using the spec and not re-exported here: `distributions` (entries as Optuna
distributions) and `starter` (the starter files of `hpo init`).
"""

from __future__ import annotations

from hpo.spec.base import Choice, Problems, closest, did_you_mean
from hpo.spec.describe import describe_error
from hpo.spec.limits import (
    TRAINER_LIMITS,
    TRAINER_NAMES,
    Limit,
    natural_limits,
    value_problem,
)
from hpo.spec.loading import load_spec, parse_assignments, parse_spec
from hpo.spec.search import (
    EARLY_OPTIONS,
    INSTALL_HINTS,
    SAMPLER_PACKAGES,
    TPE_OPTIONS,
    DivergenceSpec,
    EarlyName,
    EarlySpec,
    PrunerSpec,
    SamplerName,
    SamplerSpec,
    auto_needs_tpe,
)
from hpo.spec.space import (
    PARAM_TYPES,
    CategoricalParam,
    FloatParam,
    IntParam,
    LimitsSpec,
    Param,
    allowed_values,
    conditional_entries,
    fits,
    searched_categoricals,
)
from hpo.spec.stages import MIN_TRIALS_TO_REFINE, StageSpec, stage_study_name
from hpo.spec.study import RUN_ONLY_FIELDS, HeartbeatSpec, StudySpec
from hpo.spec.trainer import (
    ACTIVATIONS,
    DATASETS,
    INITIALIZERS,
    LR_SCHEDULES,
    NORMALIZATIONS,
    OPTIMIZERS,
    TRAINER_EXTRA_PARAMS,
    TRAINER_METRICS,
    TRAINER_PARAMS,
    DataSpec,
    ModelSpec,
    ObjectiveSpec,
    TrainSpec,
)

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "EARLY_OPTIONS",
    "INITIALIZERS",
    "INSTALL_HINTS",
    "LR_SCHEDULES",
    "MIN_TRIALS_TO_REFINE",
    "NORMALIZATIONS",
    "OPTIMIZERS",
    "PARAM_TYPES",
    "RUN_ONLY_FIELDS",
    "SAMPLER_PACKAGES",
    "TPE_OPTIONS",
    "TRAINER_LIMITS",
    "TRAINER_EXTRA_PARAMS",
    "TRAINER_METRICS",
    "TRAINER_NAMES",
    "TRAINER_PARAMS",
    "CategoricalParam",
    "Choice",
    "DataSpec",
    "DivergenceSpec",
    "EarlyName",
    "EarlySpec",
    "FloatParam",
    "HeartbeatSpec",
    "IntParam",
    "Limit",
    "LimitsSpec",
    "ModelSpec",
    "ObjectiveSpec",
    "Param",
    "Problems",
    "PrunerSpec",
    "SamplerName",
    "SamplerSpec",
    "StageSpec",
    "StudySpec",
    "TrainSpec",
    "allowed_values",
    "auto_needs_tpe",
    "closest",
    "conditional_entries",
    "describe_error",
    "did_you_mean",
    "fits",
    "load_spec",
    "natural_limits",
    "parse_assignments",
    "parse_spec",
    "searched_categoricals",
    "stage_study_name",
    "value_problem",
]
