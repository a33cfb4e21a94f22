"""Every use of Optuna's and optuna-dashboard's internals, in one module.

hpo goes past the public API in a few places where the public way would cost a query (or a
whole study load) per trial, or cannot say what a worker needs. Each function below names the
internal it relies on; `tests/store/test_optuna_compat.py` holds a contract test for each, and
`check_versions` refuses versions outside the range those tests ran on, with one line saying
what to install. Nothing else in hpo imports a private name of either package.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo.errors import HpoError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

# The versions whose internals the contract tests check: [lowest, first unsupported).
SUPPORTED_VERSIONS = {"optuna": ("5.0", "6"), "optuna-dashboard": ("0.21", "0.22")}


def check_versions() -> None:
    """Refuse, in one line, an Optuna or optuna-dashboard outside the tested range."""
    from packaging.version import Version

    for package, (lowest, beyond) in SUPPORTED_VERSIONS.items():
        try:
            found = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue  # optuna-dashboard is needed only by the dashboard and the note
        if not Version(lowest) <= Version(found) < Version(beyond):
            raise HpoError(
                f"hpo relies on internals of {package} {lowest} up to (not including) {beyond}, "
                f"but {found} is installed; install '{package}>={lowest},<{beyond}'"
            )


# --- Trials and studies: ids and storages that the public API does not expose. -------------


def trial_id(trial: optuna.Trial) -> int:
    """The storage id of a running trial (`Trial._trial_id`)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    """The storage id of a study (`Study._study_id`)."""
    return study._study_id


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (`Study._storage`)."""
    return study._storage


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDBStorage behind a storage (Optuna wraps it in `_CachedStorage._backend`)."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def system_attrs_at_start(trial: optuna.Trial) -> dict[str, Any]:
    """The system attrs a trial had when `ask` made it (`Trial._cached_frozen_trial`).

    Optuna read them when it created the trial; asking the storage again would cost every trial
    a query.
    """
    return trial._cached_frozen_trial.system_attrs


def route_trial_writes(trial: optuna.Trial, storage: Any) -> None:
    """Send the trial's own writes (`report`, `set_user_attr`) through `storage`.

    `Trial` keeps the storage it writes to in its `storage` attribute and calls
    `storage.set_trial_intermediate_value` / `set_trial_user_attr` on it; hpo's TrialRecorder
    stands in there to buffer those writes.
    """
    trial.storage = storage


class ClaimingStudy(optuna.Study):
    """A study whose `ask` takes up the trial `claim` made, when there is one.

    Starting a trial exactly takes one step no other worker may interleave: count the trials,
    then make the next one exist. Optuna's `ask` does the second half with much more (reading
    the trial back, the sampler's `before_trial`); holding the study lock through all of it
    made the lock the bottleneck (~25 ms a trial). So a worker claims its trial under the lock
    and `ask` takes it up through `Study._pop_waiting_trial_id`, the hook `ask` calls first
    (it creates a new trial only when that returns None), calling `on_ask` as it does.
    """

    claimed: int | None = None
    on_ask: Callable[[], None] | None = None  # called as `ask` takes up the claim
    _taken: int | None = None

    def claim(self, pop_waiting: bool) -> int:
        """Make this worker's next trial exist, RUNNING; call it holding the study lock.

        The claim is kept until `ask_claimed` returns the trial, so a retry after the database
        went away (during the claim or inside `ask`) asks for the same trial, never a second.
        """
        if self.claimed is None:
            popped = super()._pop_waiting_trial_id() if pop_waiting else None
            if popped is None:
                popped = self._storage.create_new_trial(self._study_id)
            self.claimed = popped
        return self.claimed

    def ask_claimed(self) -> optuna.Trial:
        """`ask` for the claimed trial; the claim ends only once `ask` has returned it."""
        self._taken = None
        trial = self.ask()
        if self._taken is None or self._taken != self.claimed:
            raise HpoError(f"Optuna {optuna.__version__}'s ask did not run the trial this "
                           "worker claimed; install optuna>=5,<6")
        self.claimed = None
        return trial

    def _pop_waiting_trial_id(self) -> int | None:
        if self.claimed is None:  # nothing claimed: Optuna's own queue, as in a plain study
            return super()._pop_waiting_trial_id()
        self._taken = self.claimed
        if self.on_ask is not None:
            self.on_ask()
        return self.claimed


# --- Opening a storage without alembic (`optuna.storages._rdb.storage._VersionManager`). ----


def _schema_head() -> str | None:
    """The newest schema revision this Optuna knows, read from its migration scripts'
    `revision` / `down_revision` lines: what alembic's ScriptDirectory computes, in a
    millisecond. None if the scripts do not read as one chain (alembic then decides)."""
    import re

    import optuna.storages._rdb as rdb

    folder = Path(rdb.__file__).parent / "alembic" / "versions"
    revisions, parents = set(), set()
    for script in folder.glob("*.py"):
        text = script.read_text()
        revision = re.search(r'^revision = "([^"]+)"', text, re.MULTILINE)
        parent = re.search(r'^down_revision = (?:"([^"]+)"|None)', text, re.MULTILINE)
        if revision is None or parent is None:
            return None
        revisions.add(revision.group(1))
        if parent.group(1):
            parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def install_quick_schema_check() -> None:
    """Let `RDBStorage` open a database whose schema is already stamped without importing
    alembic (half a second of every worker's and command's start): the stamped revision is
    read with one query and compared with the scripts' head. A new or unstamped database,
    or scripts that do not read as one chain, take Optuna's own path through alembic."""
    from optuna.storages._rdb import storage as rdb_storage

    original = rdb_storage._VersionManager
    if getattr(original, "hpo_quick", False):
        return
    head = _schema_head()
    if head is None:
        return

    class QuickVersionManager(original):  # type: ignore[misc, valid-type]
        hpo_quick = True

        def _stamped(self) -> str | None:
            import sqlalchemy

            try:
                with self.engine.connect() as connection:
                    return connection.execute(
                        sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()
            except sqlalchemy.exc.DBAPIError:
                return None  # no such table yet

        def _init_alembic(self) -> None:
            # Read once for the schema check that follows in `RDBStorage.__init__`, which
            # takes it (an upgrade may change it later).
            self.revision = self._stamped()
            if self.revision is None:
                super()._init_alembic()

        def get_current_version(self) -> str:
            revision = self.__dict__.pop("revision", None) or self._stamped()
            return revision or super().get_current_version()

        def get_head_version(self) -> str:
            return head

    rdb_storage._VersionManager = QuickVersionManager


# --- SQL on Optuna's tables (`optuna.storages._rdb.models`), one query where Optuna needs many.


def count_by_state(backend: RDBStorage, study_id: int, connection: Any = None
                   ) -> dict[TrialState, int]:
    """How many of a study's trials are in each state, counted by the database.

    On `connection` if given (the study lock's), else on a connection of its own.
    """
    from optuna.storages._rdb import models
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    trial = models.TrialModel
    query = (select(trial.state, func.count()).where(trial.study_id == study_id)
             .group_by(trial.state))
    if connection is not None:
        rows = connection.execute(query).all()
    else:
        with Session(backend.engine) as session:
            rows = session.execute(query).all()
    counts = dict.fromkeys(TrialState, 0)
    for state, n in rows:
        counts[state] = n
    return counts


def stale_trial_ids(backend: RDBStorage, study_id: int, grace_s: float) -> list[int]:
    """RUNNING trials of the study whose worker has been silent for more than `grace_s`.

    Silent means its last heartbeat is older than that or, for a trial that never had one (a
    worker killed before its first beat, a notebook's `study.ask()`), it started longer ago.
    Optuna's own `_get_stale_trial_ids` skips trials without a heartbeat, which left them
    RUNNING for ever. Heartbeats are stamped by the database's clock, `datetime_start` by the
    worker's (naive UTC), so each is compared with its own clock.
    """
    from optuna.storages._rdb import models
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    # The tables' columns, not the models' attributes: Optuna 5 maps `datetime_start` to a
    # property (naive UTC in the table, local time on the model).
    trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    trial, beat = trials.c, beats.c
    with Session(backend.engine) as session:
        database_now = session.execute(select(func.now())).scalar().replace(tzinfo=None)
        rows = session.execute(
            select(trial.trial_id, trial.datetime_start, beat.heartbeat)
            .select_from(trials.outerjoin(beats, beat.trial_id == trial.trial_id))
            .where(trial.study_id == study_id, trial.state == TrialState.RUNNING)
        ).all()
    grace = timedelta(seconds=grace_s)
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)
    stale = []
    for found_id, started_utc, last_beat in rows:
        if last_beat is not None:
            silent = database_now - last_beat.replace(tzinfo=None)
        elif started_utc is not None:
            silent = utc_now - started_utc
        else:
            continue
        if silent > grace:
            stale.append(found_id)
    return stale


def write_trial_rows(backend: RDBStorage, trial_id: int, values: dict[int, float],
                     attrs: dict[str, Any]) -> None:
    """Write a running trial's intermediate values and user attrs in one transaction.

    Rows for the same steps and keys are replaced, so writing the same batch twice (a retry
    after a connection dropped before the commit was acknowledged) leaves one copy. Raises
    UpdateFinishedTrialError when the trial has finished (another worker failed it).
    """
    from optuna.storages._rdb import models
    from sqlalchemy import delete, insert, select
    from sqlalchemy.orm import Session

    value_model, attr_model = models.TrialIntermediateValueModel, models.TrialUserAttributeModel
    value_rows = []
    for step, value in values.items():
        stored, kind = value_model.intermediate_value_to_stored_repr(value)
        value_rows.append({"trial_id": trial_id, "step": step,
                           "intermediate_value": stored, "intermediate_value_type": kind})
    with Session(backend.engine) as session, session.begin():
        state = session.execute(
            select(models.TrialModel.state).where(models.TrialModel.trial_id == trial_id)
            .with_for_update()
        ).scalar_one()
        if state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"Trial#{trial_id} has already finished and can not be updated."
            )
        if value_rows:
            session.execute(delete(value_model).where(
                value_model.trial_id == trial_id, value_model.step.in_(list(values))))
            session.execute(insert(value_model), value_rows)
        if attrs:
            session.execute(delete(attr_model).where(
                attr_model.trial_id == trial_id, attr_model.key.in_(list(attrs))))
            session.execute(insert(attr_model), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in attrs.items()
            ])


# --- optuna-dashboard ------------------------------------------------------------------------


def dashboard_save_note() -> Callable[[optuna.Study, str], None]:
    """`optuna_dashboard.save_note`, without importing the whole dashboard if it can.

    `import optuna_dashboard` loads its web app and, through Optuna's importance module,
    scikit-learn: a second of CPU at the end of every run, for one function that needs only
    Optuna. So its `_note` module is loaded on its own; should the package be laid out
    differently, it is imported the ordinary way.
    """
    if "optuna_dashboard" in sys.modules:
        return sys.modules["optuna_dashboard"].save_note
    try:
        package = importlib.util.find_spec("optuna_dashboard")
        path = Path(next(iter(package.submodule_search_locations))) / "_note.py"
        found = importlib.util.spec_from_file_location("hpo._dashboard_note", path)
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module.save_note
    except Exception:  # any change of layout: the public way still works
        import optuna_dashboard

        return optuna_dashboard.save_note
