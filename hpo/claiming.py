"""A study whose next trial is claimed under the study lock and then run outside most of it.

Starting a trial exactly takes one step no other worker may interleave: count the study's
trials, then make the next one exist (pop a queued retry or create a RUNNING trial). Optuna's
`ask` does the second half along with much more (reading the new trial back, the sampler's
`before_trial`), and holding the lock across all of it made the lock the bottleneck: it was
held for ~25 ms of each trial, capping a study near 40 trials/s however many workers ran.
So a worker claims its trial while it holds the lock, and `ask` takes up that claimed trial
instead of popping or creating one, calling `on_ask` (which releases the lock) as it does.

The lock is held until then, not only until the claim, because Optuna's `optimize` fails
stale trials just before `ask`: a dead worker's trial turns FAIL and its retry is queued in
two commits, and a worker counting between them would see a free slot and overshoot.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna


class ClaimingStudy(optuna.Study):
    """An Optuna study whose `ask` runs the trial `claim` made, when there is one."""

    claimed: int | None = None
    on_ask: Callable[[], None] | None = None  # called as `ask` takes up the claim

    def claim(self, pop_waiting: bool) -> int:
        """Make this worker's next trial exist, RUNNING; call it holding the study lock.

        A claim that outlives a failed attempt to run it (the database went away) is kept, so
        retrying never claims a second trial.
        """
        if self.claimed is None:
            popped = super()._pop_waiting_trial_id() if pop_waiting else None
            if popped is None:
                popped = self._storage.create_new_trial(self._study_id)
            self.claimed = popped
        return self.claimed

    def beat_for_claim(self) -> None:
        """Record the claimed trial's first heartbeat, before Optuna's heartbeat thread runs.

        A RUNNING trial that never had a heartbeat is never deemed stale: a worker killed
        between its claim and `ask` would leave it RUNNING for ever.
        """
        if self.claimed is not None:
            self._storage.record_heartbeat(self.claimed)

    def _pop_waiting_trial_id(self) -> int | None:
        # Optuna's `ask` calls this first and creates a new trial only when it returns None.
        if self.claimed is None:  # nothing claimed: Optuna's own queue, as in a plain study
            return super()._pop_waiting_trial_id()
        claimed, self.claimed = self.claimed, None
        if self.on_ask is not None:
            self.on_ask()
        return claimed
