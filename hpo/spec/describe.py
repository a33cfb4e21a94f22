"""Pydantic validation errors as (dotted field, message) a person reads."""

from __future__ import annotations

import re
import typing
from typing import Any

from pydantic import BaseModel

from hpo.spec.base import closest, did_you_mean
from hpo.spec.space import PARAM_TYPES


def unknown_key_message(key: str, allowed: list[str]) -> str:
    return f"unknown key {key!r}; {did_you_mean(key, allowed)}allowed keys: {', '.join(allowed)}"


_UNION_MEMBER = re.compile(r"^([A-Z]\w*Spec|literal\[.*\]|int|float|bool|str|function-.*)$")


def format_location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # Discriminated unions add the entry's type tag to the location; the user never wrote it.
    if len(parts) >= 3 and parts[0] == "search_space" and parts[2] in PARAM_TYPES:
        del parts[2]
    # Other unions add the member they tried (`DivergenceSpec`, `literal[False]`, `int`).
    return ".".join(p for p in parts if not _UNION_MEMBER.match(p))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec sections a field's annotation can hold (inside lists, dicts and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The `type:` values that pick this model in a discriminated union (none if untagged)."""
    field = model.model_fields.get("type")
    return typing.get_args(field.annotation) if field is not None else ()


def section_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The section (model) that holds the key at the end of an error's location."""
    model: type[BaseModel] | None = root
    pending: list[type[BaseModel]] = []  # a union's members, until the location picks one
    for part in loc[:-1]:
        if pending:
            chosen = [m for m in pending if part in (m.__name__, *_type_tags(m))]
            if chosen:
                model, pending = chosen[0], []
            continue  # a dict key or list index on the way to the member
        if model is not None and part in model.model_fields:
            found = _models_in(model.model_fields[part].annotation)
            model, pending = (found[0], []) if len(found) == 1 else (None, found)
    return model


def describe_error(error: dict[str, Any], root: type[BaseModel] = BaseModel
                   ) -> tuple[str, str]:
    """A pydantic error as (dotted field, message for a person)."""
    where = format_location(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        section = section_at(error["loc"], root)
        allowed = list(section.model_fields) if section is not None else []
        message = unknown_key_message(str(error["loc"][-1]), allowed)
    elif error["type"] == "union_tag_invalid":
        tag = error["ctx"]["tag"]
        hint = closest(tag, list(PARAM_TYPES))
        message = f"unknown type {tag!r}; " + (f"did you mean {hint!r}? " if hint else "")
        message += f"allowed types: {', '.join(PARAM_TYPES)}"
    elif error["type"] == "union_tag_not_found":
        message = f"missing type; give one of: {', '.join(PARAM_TYPES)}"
    elif error["type"] not in ("value_error", "missing") and "input" in error:
        if not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
    return where, message
