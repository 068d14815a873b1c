"""Webhook signatures and the retry schedule (pure)."""

from __future__ import annotations

import pytest

from framefleet.config import Settings
from framefleet.webhooks import signing
from framefleet.webhooks.delivery import backoff_seconds, schedule_floor_seconds


def test_both_secrets_verify_and_tampering_or_staleness_does_not() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    header = signing.header_value([new, old], 1_000_000, b'{"a":1}')
    assert signing.verify(b'{"a":1}', header, new, now=1_000_010) == 1_000_000
    assert signing.verify(b'{"a":1}', header, old, now=1_000_010) == 1_000_000
    for body, secret, now in ((b'{"a":2}', new, 1_000_010), (b'{"a":1}', "whsec_other", 1_000_010)):
        with pytest.raises(signing.SignatureError):
            signing.verify(body, header, secret, now=now)
    with pytest.raises(signing.SignatureError):
        signing.verify(b'{"a":1}', header, new, now=1_000_301)
    with pytest.raises(signing.SignatureError):
        signing.verify(b'{"a":1}', "v1=abc", new)


def test_default_retries_span_at_least_a_day_and_jitter_never_shortens() -> None:
    settings = Settings()
    floor = schedule_floor_seconds(
        base=settings.webhook_retry_base_seconds,
        cap=settings.webhook_retry_cap_seconds,
        max_attempts=settings.webhook_max_attempts,
    )
    assert 24 * 3600 <= floor <= 26 * 3600
    assert [backoff_seconds(n, base=10, cap=3600, jitter=0) for n in (1, 2, 3, 10)] == [10, 20, 40, 3600]
    assert backoff_seconds(1, base=10, cap=3600, jitter=0.99) == pytest.approx(12.475)


def test_milestones_crossed_in_order_once_per_pass() -> None:
    from framefleet.webhooks.feed import milestones_crossed

    marks = [75, 25, 50, 25]
    assert milestones_crossed(0.0, 10.0, marks) == []
    assert milestones_crossed(10.0, 25.0, marks) == [25]  # reaching a milestone exactly counts
    assert milestones_crossed(25.0, 60.0, marks) == [50]  # already passed: not again
    assert milestones_crossed(0.0, 100.0, marks) == [25, 50, 75]  # one jump passes several, lowest first
    assert milestones_crossed(80.0, 90.0, marks) == [] and milestones_crossed(0.0, 100.0, []) == []


def test_progress_milestones_setting_is_bounded() -> None:
    assert Settings().webhook_progress_milestones == [25, 50, 75]
    for bad in ([0], [100], [-5]):
        with pytest.raises(ValueError):
            Settings(webhook_progress_milestones=bad)
