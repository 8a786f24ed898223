"""Write conflicts a server database reports at random under concurrency, and retrying through them.

PostgreSQL aborts one of two transactions that wait on each other (deadlock, SQLSTATE 40P01) or that
cannot be serialized (40001); MariaDB reports a deadlock as error 1213, and Galera reports a write set
that lost certification against another node's commit as the same 1213 at COMMIT. In every case the
transaction was rolled back as a whole and running it again is the documented cure: the retried
transaction reads the winner's commit and decides again. A Galera node outside the primary component
(joining, or cut off for a moment by a view change) refuses every statement with error 1047 before it
runs: nothing was written, so the transaction is tried again too (on a node that stays out, the tries
run out and the error is raised).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_ATTEMPTS = 6
"""Tries of one transaction; conflicts are short-lived, so a handful is plenty."""

_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected (PostgreSQL)
_MYSQL_ERRORS = {
    1213,
    1205,
    1047,
}  # deadlock or Galera certification failure; lock wait timeout; node not ready


def is_conflict(exc: BaseException) -> bool:
    """True for an error that means "run the whole transaction again"."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    if sqlstate in _SQLSTATES:
        return True
    code = orig.args[0] if orig is not None and orig.args else None
    return isinstance(code, int) and code in _MYSQL_ERRORS


def retried(transaction: Callable[[], T], attempts: int = RETRY_ATTEMPTS) -> T:
    """Run `transaction` (one whole transaction, begun and committed inside it) until it gets through a
    write conflict; a short random pause between tries lets the winner finish."""
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except DBAPIError as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            log.info(
                "write conflict, transaction retried", extra={"attempt": attempt, "error": str(exc.orig)}
            )
            time.sleep(random.uniform(0.0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")
