"""The studies a storage holds: one row each for `hpo list`, and deleting them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.report.summary import aligned
from hpo.report.trials import metric_name, ranked, state_counts
from hpo.store.carry import is_carried
from hpo.store.optuna_compat import study_storage

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage


def study_rows(storage: BaseStorage) -> list[dict[str, Any]]:
    """Each study's name, direction, trials by state, best value and last activity."""
    import optuna

    rows = []
    for frozen in storage.get_all_studies():
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        directions = [d.name.lower() for d in frozen.directions]
        best = ranked(study, trials) if len(directions) == 1 else []
        times = [t.datetime_complete or t.datetime_start for t in trials]
        last = max((t for t in times if t is not None), default=None)
        rows.append({
            "study": frozen.study_name,
            "direction": ",".join(directions),
            "metric": metric_name(study),
            "counts": state_counts([t for t in trials if not is_carried(t)]),
            "carried": sum(1 for t in trials if is_carried(t)),
            "best": best[0].value if best else None,
            "last_activity": last.isoformat(timespec="seconds") if last else None,
        })
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned table, one study a line."""
    if not rows:
        return "No studies."
    header = ["study", "direction", "complete", "pruned", "fail", "running", "waiting",
              "carried", "best", "last activity"]
    body = [[row["study"], row["direction"], *(str(n) for n in row["counts"].values()),
             str(row["carried"]),
             "-" if row["best"] is None else f"{row['best']:.6g} {row['metric']}",
             (row["last_activity"] or "-").replace("T", " ")] for row in rows]
    return aligned([header, *body])


def delete_studies(studies: list[optuna.Study]) -> None:
    """Delete the studies and every trial in them (the storage's file or tables stay)."""
    import optuna

    for study in studies:
        optuna.delete_study(study_name=study.study_name, storage=study_storage(study))
