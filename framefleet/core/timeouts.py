"""Run-time limits (pure): how long one attempt of a job may run.

The limit grows with the media: input (or trimmed output) duration times a factor, kept between a floor (short
clips still need time to start, probe and publish) and a ceiling (nothing runs forever). A job may ask for
its own limit, which is honoured within [OVERRIDE_MIN_SECONDS, ceiling].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

OVERRIDE_MIN_SECONDS = 1


@dataclass(frozen=True)
class TimeLimits:
    factor: float
    floor_seconds: float
    ceiling_seconds: float

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError("the timeout factor must be positive")
        if not 0 < self.floor_seconds <= self.ceiling_seconds:
            raise ValueError("timeout floor must be positive and at most the ceiling")


def run_limit(media_seconds: float | None, limits: TimeLimits, override: float | None = None) -> float:
    """Seconds an attempt may run: the override (clamped), else duration x factor within [floor, ceiling].

    An unknown duration (a still image, a stream without a length) gets the ceiling; stall detection still
    catches an encoder that stops making progress.
    """
    if override is not None:
        return clamp_override(override, limits)
    if media_seconds is None or not math.isfinite(media_seconds) or media_seconds <= 0:
        return limits.ceiling_seconds
    return min(limits.ceiling_seconds, max(limits.floor_seconds, media_seconds * limits.factor))


def clamp_override(seconds: float, limits: TimeLimits) -> float:
    """An override kept within [OVERRIDE_MIN_SECONDS, ceiling]."""
    return min(limits.ceiling_seconds, max(float(OVERRIDE_MIN_SECONDS), seconds))


def override_error(seconds: float, limits: TimeLimits) -> str | None:
    """Why a requested override is refused at submission, or None when it is acceptable."""
    if seconds < OVERRIDE_MIN_SECONDS:
        return f"must be at least {OVERRIDE_MIN_SECONDS} second"
    if seconds > limits.ceiling_seconds:
        return f"must be at most {int(limits.ceiling_seconds)} seconds (FRAMEFLEET_JOB_MAX_SECONDS)"
    return None
