"""The study's dashboard note, refreshed at the end of every `hpo run`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hpo.store import optuna_compat
from hpo.store.storage import mask_url

if TYPE_CHECKING:
    import optuna

    from hpo.spec import StudySpec

logger = logging.getLogger("hpo")


def write_study_note(study: optuna.Study, spec: StudySpec, url: str,
                     summary: dict[str, Any]) -> None:
    """Refresh the study's dashboard note: the spec as run (passwords masked) and `summary`."""
    from hpo.report.summary import study_note

    spec_data = spec.normalized()
    if spec_data.get("storage"):
        spec_data["storage"] = mask_url(spec_data["storage"])
    note = study_note(summary, spec_data, str(spec.source), mask_url(url))
    try:
        optuna_compat.dashboard_save_note()(study, note)
    except Exception as e:  # a note is a courtesy; workers racing to write it lose nothing
        logger.debug("could not save the study note: %s", e)
