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
