"""Overload answers fast: a full pool or a full process is a 503 with Retry-After within about a second,
never a 500 after half a minute; authentication comes before the body."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.api.limits import Slots
from framefleet.config import Settings
from framefleet.db.session import engine_for, limits_of
from tests.api.conftest import job_body

UNAVAILABLE = "https://framefleet.dev/problems/unavailable"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def tiny_app(api_settings: Settings) -> FastAPI:
    """An API with one database connection, one thread and one request at a time (model_copy skips the
    settings' own pool-covers-threads check, so the pool can be made this small)."""
    return create_app(
        api_settings.model_copy(
            update={
                "db_pool_size": 1,
                "db_max_overflow": 0,
                "db_pool_timeout_seconds": 0.3,
                "api_threads": 4,
                "api_max_in_flight": 1,
                "api_max_waiting": 1,
                "api_admission_wait_seconds": 0.2,
            }
        )
    )


@pytest.fixture()
def held_pool(tiny_app: FastAPI) -> Iterator[None]:
    """The tiny app's only connection, taken by something else."""
    settings: Settings = tiny_app.state.settings
    with engine_for(settings.database_url, limits_of(settings)).connect():
        yield


def test_an_exhausted_pool_is_503_at_once(tiny_app: FastAPI, held_pool: None, auth: dict[str, str]) -> None:
    with TestClient(tiny_app) as client:
        started = time.monotonic()
        response = client.get("/v1/jobs", headers=auth)
        elapsed = time.monotonic() - started

    assert response.status_code == 503, response.text
    assert response.json()["type"] == UNAVAILABLE
    assert response.headers["Retry-After"] == "1"
    assert elapsed < 2


def test_a_full_process_refuses_with_503_and_healthz_still_answers(
    tiny_app: FastAPI, held_pool: None, auth: dict[str, str]
) -> None:
    answers: list[int] = []
    with TestClient(tiny_app) as client:
        client.get("/healthz")
        # Three at once into one slot and a line of one: one works (on the held pool), one waits
        # (its budget runs out first), one is refused at once.
        threads = [
            threading.Thread(target=lambda: answers.append(client.get("/v1/jobs", headers=auth).status_code))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        assert client.get("/healthz").status_code == 200
        for thread in threads:
            thread.join(10)
        refused = client.get("/v1/jobs", headers=auth)

    assert sorted(answers) == [503, 503, 503]
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"


def test_unauthenticated_post_is_401_whatever_its_body(client: TestClient) -> None:
    for body in (b"{not json", b"[]", b'{"input": 3}'):
        response = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 401, (body, response.text)
        assert response.json()["type"] == "https://framefleet.dev/problems/unauthorized"
    bad_key = client.post("/v1/jobs", content=b"{not json", headers={"X-API-Key": "ff_unknown"})
    assert bad_key.status_code == 401
    assert 'error="invalid_token"' in bad_key.headers["WWW-Authenticate"]


def test_authenticated_malformed_post_is_still_422(client: TestClient, auth: dict[str, str]) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    response = client.post("/v1/jobs", content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    assert client.post("/v1/jobs", json=job_body(), headers=auth).status_code == 201


# ---------------------------------------------------------------- the slot counter (pure logic)


def test_slots_hand_over_in_order_and_refuse_beyond_the_line() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1, max_waiting=2)
        order: list[str] = []
        assert await slots.take(0)

        async def wait(name: str, budget: float) -> None:
            order.append(f"{name}:{await slots.take(budget)}")

        first = asyncio.create_task(wait("first", 1))
        second = asyncio.create_task(wait("second", 1))
        await asyncio.sleep(0)
        assert not await slots.take(1)  # the line is full: refused without waiting
        slots.release()  # handed straight to `first`; `used` stays 1
        await first
        assert slots.used == 1
        slots.release()
        await second
        slots.release()
        assert slots.used == 0
        return order

    assert asyncio.run(scenario()) == ["first:True", "second:True"]


def test_slots_wait_budget_runs_out_and_cancelled_waiters_pass_their_slot_on() -> None:
    async def scenario() -> None:
        slots = Slots(1, max_waiting=4)
        assert await slots.take(0)
        started = time.monotonic()
        assert not await slots.take(0.05)
        assert 0.04 < time.monotonic() - started < 1
        assert not await slots.take(0)  # no budget: no wait

        leaving = asyncio.create_task(slots.take(5))
        staying = asyncio.create_task(slots.take(5))
        await asyncio.sleep(0)
        slots.release()  # handed to `leaving`, which is cancelled before it runs
        leaving.cancel()
        assert await staying  # the slot went on to the next in line
        assert slots.used == 1

    asyncio.run(scenario())
