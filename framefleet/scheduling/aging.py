"""Aging (pure): a job waiting longer than the aging step moves up one priority per step it waited.

Strict priority starves low priorities under constant high-priority load; aging bounds that wait. The
promoted job keeps its requested `priority`; only its `effective_priority` (the queue it waits in) rises,
and never above the configured ceiling, so aged batch work cannot crowd out `live`.
"""

from __future__ import annotations

import math

from framefleet.core.spec import PRIORITY_ORDER, Priority


def aged_priority(
    original: Priority | str, waited_seconds: float, *, step_seconds: float, ceiling: Priority | str
) -> Priority:
    """The priority a job deserves after waiting `waited_seconds` (0 step disables aging)."""
    start = PRIORITY_ORDER.index(Priority(original))
    if step_seconds <= 0 or waited_seconds < step_seconds or not math.isfinite(waited_seconds):
        return PRIORITY_ORDER[start]
    top = PRIORITY_ORDER.index(Priority(ceiling))
    if start <= top:
        return PRIORITY_ORDER[start]  # already at or above the ceiling: aging never lowers a job
    steps = int(waited_seconds // step_seconds)
    return PRIORITY_ORDER[max(top, start - steps)]


def is_higher(candidate: Priority | str, than: Priority | str) -> bool:
    """Whether `candidate` is drained before `than`."""
    return PRIORITY_ORDER.index(Priority(candidate)) < PRIORITY_ORDER.index(Priority(than))
