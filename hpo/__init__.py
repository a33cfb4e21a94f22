"""hpo: hyperparameter search for PyTorch models, declared in one YAML file."""

from __future__ import annotations

from typing import Any

__all__ = ["load", "report_cost", "run", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so `hpo --help` and plain imports of hpo stay free of optuna and torch.
    if name == "report_cost":
        from hpo.store.recorder import report_cost

        return report_cost
    if name in ("run", "load"):
        from hpo import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")
