"""Riding out a database outage in a worker: what it has done is kept, and written once the database is back.

A worker that finishes an encode while PostgreSQL restarts (or fails over) holds its result: the ownership
check before publishing, the ending's transaction and the claim of its next job are retried until the
database answers again, for at most `db_outage_hold_seconds`. Every one of them is a compare-and-set on the
job row, so a retry after an outage can do no more than the first try would have: if the job was taken from
this attempt meanwhile, the retry is refused as it would have been.

Holding is safe for the job's ownership because the reaper cannot act without the database, and once it is
back the worker's heartbeat (which keeps reaching Redis throughout) still shows the job running here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from framefleet.logging import get_logger

log = get_logger("framefleet.db.outage")
T = TypeVar("T")
# From the first failure: 0.5, 1, 2, 4, 5, 5, ... seconds between tries. A restart takes seconds; a failover
# of a managed database tens of seconds. Polling faster would only add connection attempts to its start.
FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 5.0


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (as opposed to a statement it refused).

    OperationalError covers a refused connection, a server shutting down or starting up; InterfaceError and
    disconnects (`connection_invalidated`) a connection that died under its user.
    """
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def pauses(hold_seconds: float) -> list[float]:
    """The waits between tries: doubling from FIRST_PAUSE_SECONDS to MAX_PAUSE_SECONDS, `hold_seconds` in all
    (the last one shortened to fit)."""
    waits: list[float] = []
    pause, total = FIRST_PAUSE_SECONDS, 0.0
    while total < hold_seconds:
        step = min(pause, hold_seconds - total)
        waits.append(step)
        total += step
        pause = min(pause * 2, MAX_PAUSE_SECONDS)
    return waits


def hold_through_outage(
    action: Callable[[], T], *, what: str, hold_seconds: float, sleep: Callable[[float], None] = time.sleep
) -> T:
    """`action()`, tried again while the database is unavailable, for at most `hold_seconds` in all.

    `action` must be a whole transaction (it is run again from its start). Any other error, or the outage
    outlasting the hold, reaches the caller.
    """
    held_since: float | None = None
    waits = iter(pauses(hold_seconds))
    while True:
        try:
            result = action()
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            pause = next(waits, None)
            if pause is None:
                log.error("database still unavailable; giving up", what=what, held_seconds=hold_seconds)
                raise
            if held_since is None:
                held_since = time.monotonic()
                log.warning(
                    "database unavailable; holding", what=what, error=f"{type(exc).__name__}: {exc}"[:300]
                )
            sleep(pause)
            continue
        if held_since is not None:
            log.info(
                "database back; held work recorded",
                what=what,
                held_seconds=round(time.monotonic() - held_since, 2),
            )
        return result
