"""A study's trials as records, and those records as strict JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING, Any

from hpo.report import jsonout

if TYPE_CHECKING:
    import optuna

def trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial as plain data: number, state, value, params, user attrs, duration."""
    records = []
    for t in study.get_trials(deepcopy=False):
        duration = t.duration.total_seconds() if t.duration is not None else None
        records.append({
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
            "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
            "duration_s": duration,
            "params": dict(t.params),
            "user_attrs": dict(t.user_attrs),
            "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        })
    return records


def to_json(records: list[dict[str, Any]]) -> str:
    return jsonout.dumps(records) + "\n"


def to_csv(records: list[dict[str, Any]]) -> str:
    """One row a trial; params and user attrs become `params.NAME` / `user_attrs.NAME` columns."""
    params = list(dict.fromkeys(k for r in records for k in r["params"]))
    attrs = list(dict.fromkeys(k for r in records for k in r["user_attrs"]))
    fixed = ["number", "state", "value", "datetime_start", "datetime_complete", "duration_s"]
    out = io.StringIO()
    writer = csv.writer(out)
    header = [*fixed, *(f"params.{p}" for p in params), *(f"user_attrs.{a}" for a in attrs)]
    writer.writerow(header)
    for r in records:
        attr_cells = [_cell(r["user_attrs"].get(a)) for a in attrs]
        writer.writerow([*(_cell(r[k]) for k in fixed),
                         *(_cell(r["params"].get(p)) for p in params), *attr_cells])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(jsonout.finite(value))
    return value
