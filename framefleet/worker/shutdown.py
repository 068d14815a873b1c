"""Graceful shutdown: on SIGTERM a worker takes no new job, lets the running one finish within a grace
period, and otherwise hands it back (queued again, no failed attempt counted).

Celery's main process receives SIGTERM and stops consuming; the job runs in a pool process. The main
process writes the drain deadline into a small shared memory block created before the pool processes are
forked, so every pool process sees it on its next poll without a round trip through Redis (which may be
the very thing going away). Pool processes ignore SIGTERM themselves: a signal to the whole process group
(systemd, `framefleet up`) must not kill a job mid-encode before its grace period is over.
"""

from __future__ import annotations

import mmap
import struct
import time

_FORMAT = "d"
# Anonymous shared mapping: inherited by every process forked after this module is imported.
_shared = mmap.mmap(-1, struct.calcsize(_FORMAT))


def _read_shared() -> float | None:
    (value,) = struct.unpack_from(_FORMAT, _shared, 0)
    return value or None


def request_drain(grace_seconds: float) -> None:
    """Start draining the whole worker (main process): running jobs must end within `grace_seconds`."""
    deadline = time.monotonic() + grace_seconds
    current = _read_shared()
    if current is None or deadline < current:
        struct.pack_into(_FORMAT, _shared, 0, deadline)


def draining() -> bool:
    """Whether the worker as a whole is shutting down (take no new job)."""
    return _read_shared() is not None


def grace_over() -> bool:
    """Whether the running job has had its grace period and must be handed back."""
    deadline = _read_shared()
    return deadline is not None and time.monotonic() >= deadline


def clear() -> None:
    """Reset every drain request (tests, and a worker started again in the same process)."""
    struct.pack_into(_FORMAT, _shared, 0, 0.0)
