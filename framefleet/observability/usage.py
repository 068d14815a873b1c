"""What one attempt consumed, collected while it runs.

The worker opens an `AttemptUsage` around each attempt (`collecting(...)`); the ffmpeg runner adds the
CPU time the kernel accounted for each ffmpeg process group it reaped, and the pipeline adds the bytes it
fetched. Nothing here reads clocks or counters of its own: the task turns the totals into a usage record
(observability/cost.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class AttemptUsage:
    cpu_seconds: float = 0.0
    ffmpeg_wall_seconds: float = 0.0
    # Wall time of the ffmpeg runs that encoded on a GPU: the attempt held the device meanwhile.
    gpu_seconds: float = 0.0
    bytes_in: int = 0
    frames: int = 0
    media_seconds: float = 0.0


_current: ContextVar[AttemptUsage | None] = ContextVar("framefleet_attempt_usage", default=None)


@contextlib.contextmanager
def collecting(usage: AttemptUsage) -> Iterator[AttemptUsage]:
    """Within the block, ffmpeg runs and fetches are added to `usage`."""
    token = _current.set(usage)
    try:
        yield usage
    finally:
        _current.reset(token)


def current() -> AttemptUsage | None:
    """The usage being collected for this attempt, or None outside one (probes, tools, tests)."""
    return _current.get()
