"""The errors hpo raises on purpose. The CLI prints each as one `Error: ...` line."""

from __future__ import annotations


class HpoError(Exception):
    """A problem the user can fix; its message is one line saying what and how."""


class SpecError(HpoError):
    """The study file is unreadable or invalid."""


class ObjectiveImportError(HpoError):
    """The objective named in the study file cannot be imported."""


class StorageError(HpoError):
    """The storage cannot be opened, or holds a study that does not match the spec."""


class DataError(HpoError):
    """The training data cannot be read or is unusable."""
