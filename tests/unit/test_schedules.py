"""Cron schedule rules (pure) on a fake clock: next times across DST, on-time fires, fires missed in an
outage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from framefleet.workflows.schedules import Invalid, check_cron, next_after, plan, upcoming


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_wall_clock_times_follow_the_zones_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC once summer time began (2026-03-29).
    assert next_after("0 9 * * *", "Europe/Paris", at("2026-03-27T12:00:00")) == at("2026-03-28T08:00:00")
    assert next_after("0 9 * * *", "Europe/Paris", at("2026-03-28T12:00:00")) == at("2026-03-29T07:00:00")
    assert upcoming("*/15 * * * *", "UTC", at("2026-12-01T10:07:00"), 3) == [
        at("2026-12-01T10:15:00"),
        at("2026-12-01T10:30:00"),
        at("2026-12-01T10:45:00"),
    ]


def test_cron_and_zone_checks_name_the_field() -> None:
    assert check_cron(" 0  9 * * 1-5 ") == "0 9 * * 1-5"
    for bad in ("0 9 * *", "61 * * * *", "* * * * * *", "every day"):
        with pytest.raises(Invalid) as raised:
            check_cron(bad)
        assert raised.value.field == "cron"
    with pytest.raises(Invalid) as zone_error:
        next_after("0 9 * * *", "Mars/Olympus", at("2026-12-01T00:00:00"))
    assert zone_error.value.field == "timezone"


def test_a_fire_on_time_runs_and_moves_to_the_next_time() -> None:
    kwargs = {"cron": "*/5 * * * *", "timezone": "UTC", "catch_up": "once", "late_seconds": 60}
    due = at("2026-12-01T10:00:00")
    assert plan(next_run_at=due, now=at("2026-12-01T09:59:59"), **kwargs).fire_at is None
    decided = plan(next_run_at=due, now=at("2026-12-01T10:00:01"), **kwargs)
    assert (decided.fire_at, decided.next_run_at, decided.missed) == (due, at("2026-12-01T10:05:00"), False)


@pytest.mark.parametrize(("catch_up", "fire"), [("once", "2026-12-01T12:00:00"), ("skip", None)])
def test_fires_missed_in_an_outage_run_once_or_are_skipped(catch_up: str, fire: str | None) -> None:
    # The beat was down from 09:58 to 12:03: 25 fires were missed.
    decided = plan(
        cron="*/5 * * * *",
        timezone="UTC",
        next_run_at=at("2026-12-01T10:00:00"),
        now=at("2026-12-01T12:03:00"),
        catch_up=catch_up,
        late_seconds=60,
    )
    assert decided.fire_at == (at(fire) if fire else None)
    assert decided.missed and decided.next_run_at == at("2026-12-01T12:05:00")
