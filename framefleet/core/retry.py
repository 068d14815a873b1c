"""Retry policy (pure): exponential backoff with full jitter, per priority, decided by the failure class.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of many jobs that
failed together, for example when a storage service went away, instead of sending them back in a wave.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from framefleet.core.failures import FailureClass, is_retryable


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    max_attempts: int

    def ceiling(self, failures: int) -> float:
        """Upper bound of the wait after the `failures`-th failed attempt (1-based)."""
        exponent = max(0, failures - 1)
        # Capped before it can overflow: 2**1000 seconds is as good as the cap.
        return min(self.cap_seconds, self.base_seconds * (2 ** min(exponent, 60)))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_seconds: float
    reason: str


def backoff_delay(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `failures`-th failed attempt: uniform in [0, min(cap, base·2^(n-1))]."""
    draw = (rng or random).random()
    return draw * policy.ceiling(failures)


def decide(
    failure_class: FailureClass,
    *,
    failures: int,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Whether to retry after a failed attempt; `failures` counts failed attempts including this one."""
    if not is_retryable(failure_class):
        return RetryDecision(False, 0.0, f"{failure_class.value} is not retryable")
    if failures >= policy.max_attempts:
        return RetryDecision(
            False, 0.0, f"gave up after {failures} failed attempts (max {policy.max_attempts})"
        )
    delay = backoff_delay(policy, failures, rng)
    return RetryDecision(True, delay, f"retry {failures + 1} of {policy.max_attempts} in {delay:.1f}s")


def policy_for(
    priority: str, *, default: RetryPolicy, overrides: Mapping[str, Mapping[str, float]] | None = None
) -> RetryPolicy:
    """The policy of one priority: the default with that priority's overridden fields, if any."""
    override = (overrides or {}).get(priority) or {}
    return RetryPolicy(
        base_seconds=float(override.get("base_seconds", default.base_seconds)),
        cap_seconds=float(override.get("cap_seconds", default.cap_seconds)),
        max_attempts=int(override.get("max_attempts", default.max_attempts)),
    )
