"""Reading a study file: YAML to a StudySpec, each problem one line naming file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.errors import SpecError
from hpo.spec.base import closest
from hpo.spec.describe import describe_error, format_location, section_at
from hpo.spec.study import StudySpec


def format_errors(path: Path, errors: list[dict[str, Any]]) -> list[str]:
    """One line per problem, each naming the file and the field."""
    lines = []
    model_errors = [format_location(e["loc"]) for e in errors if e["type"] != "literal_error"]
    # `hihg: 1` is one mistake, not also a missing `high`: the unknown key's line says it.
    misspelt = {(e["loc"][:-1], closest(str(e["loc"][-1]), list(section.model_fields)))
                for e in errors if e["type"] == "extra_forbidden"
                and (section := section_at(e["loc"], StudySpec)) is not None}
    for error in errors:
        if error["type"] == "missing" and (error["loc"][:-1], error["loc"][-1]) in misspelt:
            continue
        if error["type"] == "literal_error" and any(
            where.startswith(format_location(error["loc"])) for where in model_errors
        ):
            continue  # `divergence: {fator: 2}` is a bad mapping, not a bad `false`
        where, message = describe_error(error, StudySpec)
        # A whole-study check reports all its problems in one error, a line each.
        for line in message.splitlines():
            lines.append(f"{path}: {where}: {line}" if where else f"{path}: {line}")
    # A wrong value in a union is reported once per member tried; say it once.
    return list(dict.fromkeys(lines))


def parse_spec(data: Any, path: Path) -> StudySpec:
    """Validate already-parsed YAML data as a study spec read from `path`."""
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the file must be a YAML mapping of study fields, got {data!r}")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError("\n".join(format_errors(path, e.errors()))) from e
    spec._source = path.absolute()
    return spec


def parse_assignments(pairs: tuple[str, ...], flag: str, example: str) -> dict[str, Any]:
    """`NAME=VALUE` command-line words, each value read as a YAML scalar (0.01, adam, true),
    as the study file would read it."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise SpecError(f"{flag}{pair!r}: write NAME=VALUE, e.g. {flag}{example}")
        values[name] = yaml.safe_load(text) if text else ""
    return values


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; any problem is a one-line SpecError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as e:
        raise SpecError(f"{path}: no such study file") from e
    except OSError as e:
        raise SpecError(f"{path}: cannot read the study file ({e.strerror})") from e
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        context = ""
        if e.context and e.context_mark:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        raise SpecError(f"{path}: YAML syntax error at {where}: {e.problem}{context}") from e
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: YAML syntax error: {e}") from e
    return parse_spec(data, path)
