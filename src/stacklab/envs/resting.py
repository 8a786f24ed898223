"""An environment at rest: a pass would change nothing but its own bookkeeping, told from one read.

A pass sent for an environment that needs nothing (a second submit of the same change, a look after the
work was done) still takes the lease, loads the row and saves it back: two writes and two commits to
learn that nothing is to be done. A pass first reads the row (without a lease, with the other passes of
the same moment: envs/leasing.py) and stops there when the row is at rest:

- nobody holds its lease, it belongs to no warm pool and waits in no queue, no retry is pending and no
  reset or key rotation is asked for, and the lab has no usage limit (whose deadline a pass works out
  afresh from grants and weeks);
- it is settled in a state no step follows (running and ready, or suspended), and
- its `due_at` is exactly the next policy deadline and that deadline has not come: what the pass would
  write, so no policy would act now and the next pass is already due when one would.

Why no lease is needed: nothing is written, so no other pass's or learner's write can be overwritten,
and every change that needs a pass is committed first and then makes the environment due (`due_at`
at or before its now) and submits it: a change committed before the read shows in it, and one committed
after it sends a pass of its own, which reads again. A row held by a pass, or due, is never at rest.
"""

from __future__ import annotations

from collections.abc import Callable

from stacklab.envs.policies import is_settled, policy_deadline
from stacklab.labs.schema import Lab
from stacklab.store.tables import EnvironmentRecord
from stacklab.types import Observed, Progress

RESTING = frozenset({(Observed.RUNNING, Progress.READY), (Observed.SUSPENDED, Progress.SUSPENDED)})
"""Observed states and progress in which a settled environment has no step under way."""


def at_rest(lab_of: Callable[[str], Lab], record: EnvironmentRecord, now: float) -> bool:
    """True when a pass over `record` at `now` would only take and give back its lease."""
    if record.lease_owner is not None or record.pool is not None or record.queued_at is not None:
        return False
    if record.next_attempt_at is not None or record.reset_requested or record.rotate_keys:
        return False
    if (record.observed, record.progress) not in RESTING or not is_settled(record):
        return False
    deadline = policy_deadline(record)
    if deadline is None or record.due_at != deadline or now >= deadline:
        return False
    return lab_of(record.lab_digest).usage_limit is None
