"""What every spec section shares: the strict base model, problems and near-miss hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, ConfigDict

Choice = bool | int | float | str | None


def closest(word: str, candidates: list[str]) -> str | None:
    """The candidate `word` was most likely meant to be, if any is close."""
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


class Problems(list):
    """The mistakes found in a file, collected so that all of them are reported at once."""

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Record a ValueError raised in the block as one problem, and go on."""
        try:
            yield
        except ValueError as e:
            self.append(str(e))

    def raise_any(self) -> None:
        if self:
            raise ValueError("\n".join(self))


def did_you_mean(word: str, candidates: list[str]) -> str:
    """`did you mean 'x'? ` for the candidate `word` was most likely meant to be, else ``."""
    hint = closest(word, candidates)
    return f"did you mean {hint!r}? " if hint else ""


class Strict(BaseModel):
    """A spec section: unknown keys are errors (`describe_error` suggests the key meant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
