"""Riding out a database outage (db/outage.py): which errors mean "the database is away", the waits between
tries, and that a worker's progress write skips an outage instead of failing the encode. The errors are real
ones: a PostgreSQL port where nothing listens, an SQLite file that cannot be opened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from framefleet.config import get_settings, reset_settings_cache
from framefleet.db.outage import (
    FIRST_PAUSE_SECONDS,
    MAX_PAUSE_SECONDS,
    database_unavailable,
    hold_through_outage,
    pauses,
)
from framefleet.db.session import make_engine
from framefleet.redis_client import make_redis
from framefleet.worker.pipeline import ProgressReporter
from tests import services


def unreachable_postgres() -> str:
    return f"postgresql://postgres@127.0.0.1:{services.free_port()}/postgres"


def error_of(url: str, statement: str = "SELECT 1") -> Exception:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no error")


def test_an_unreachable_database_is_unavailable_and_a_refused_statement_is_not(tmp_path: Path) -> None:
    assert database_unavailable(error_of(unreachable_postgres()))
    assert database_unavailable(error_of(f"sqlite:///{tmp_path}"))  # a folder: the file cannot be opened
    # What the database answered is no outage: retrying would only fail again.
    assert not database_unavailable(sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_unavailable(sa.exc.ProgrammingError("SELECT", {}, Exception("syntax error")))
    assert not database_unavailable(ValueError("not a database error"))


def test_pauses_double_to_the_cap_and_add_up_to_the_hold() -> None:
    waits = pauses(20)
    assert waits[0] == FIRST_PAUSE_SECONDS
    assert max(waits) == MAX_PAUSE_SECONDS
    assert sum(waits) == pytest.approx(20)
    assert waits[:4] == [0.5, 1.0, 2.0, 4.0]
    assert pauses(0) == []


def test_hold_retries_while_the_database_is_away_then_returns_the_result() -> None:
    outage = error_of(unreachable_postgres())
    tries: list[int] = []
    slept: list[float] = []

    def action() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise outage
        return "recorded"

    assert hold_through_outage(action, what="test", hold_seconds=60, sleep=slept.append) == "recorded"
    assert slept == [0.5, 1.0]


def test_hold_gives_up_after_its_time_and_passes_other_errors_at_once() -> None:
    outage = error_of(unreachable_postgres())
    slept: list[float] = []

    def down() -> None:
        raise outage

    with pytest.raises(sa.exc.OperationalError):
        hold_through_outage(down, what="test", hold_seconds=3, sleep=slept.append)
    assert sum(slept) == pytest.approx(3)

    def broken() -> None:
        raise KeyError("a bug")

    slept.clear()
    with pytest.raises(KeyError):
        hold_through_outage(broken, what="test", hold_seconds=3, sleep=slept.append)
    assert slept == []


@pytest.fixture
def database_away(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FRAMEFLEET_DATABASE_URL", unreachable_postgres())
    monkeypatch.setenv("FRAMEFLEET_PROGRESS_DB_INTERVAL", "0")
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


def test_a_progress_write_during_an_outage_does_not_fail_the_encode(database_away: None) -> None:
    settings = get_settings()
    redis_client = make_redis(f"redis://127.0.0.1:{services.free_port()}/0", socket_connect_timeout=1)
    reporter = ProgressReporter("00000000-0000-0000-0000-000000000000", 1, redis_client, settings)
    reporter.report(40.0, None, "encode")  # neither the database nor Redis answers: the encode goes on
