"""API fixtures: the app built from the session's settings (real Redis, real database), an in-process
client, API keys per tenant and role, and a clean broker between tests (no worker consumes API jobs)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.queues import ALL_QUEUES
from framefleet.redis_client import get_redis
from tests.conftest import library_uri

KeyMaker = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def api_settings(test_env: dict[str, str]) -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def api_app(api_settings: Settings) -> FastAPI:
    return create_app(api_settings)


@pytest.fixture()
def client(api_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(api_app) as test_client:
        yield test_client


@pytest.fixture()
def redis_client(api_settings: Settings) -> redis.Redis:
    return get_redis(api_settings.redis_url)


@pytest.fixture(autouse=True)
def _empty_queues(api_settings: Settings) -> Iterator[None]:
    """Drop the run_job messages the API published: these tests run no worker."""
    yield
    client = get_redis(api_settings.redis_url)
    for queue in ALL_QUEUES:
        for key in client.scan_iter(match=f"{queue.name}*"):
            client.delete(key)


@pytest.fixture()
def auth(tenant_key: tuple[str, str]) -> dict[str, str]:
    """Headers of an admin key of a fresh tenant."""
    return {"X-API-Key": tenant_key[1]}


@pytest.fixture()
def make_key(test_env: dict[str, str]) -> KeyMaker:
    """make_key(tenant=None, role="admin") -> auth headers; a fresh tenant when none is named."""
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    def make(tenant: str | None = None, role: str = "admin") -> dict[str, str]:
        with session_scope() as session:
            raw, _ = create_key(session, tenant=tenant or f"t-{uuid.uuid4().hex[:8]}", role=role)
        return {"X-API-Key": raw}

    return make


def job_body(**overrides: Any) -> dict[str, Any]:
    """A small valid job spec; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "input": library_uri("clip.mp4"),
        "outputs": [{"name": "web", "container": "mp4", "video": {"width": 320, "height": 240}}],
    }
    body.update(overrides)
    return body


def submit(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """Submit job_body(**overrides) and return the created job."""
    response = client.post("/v1/jobs", json=job_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def move_job(database_url: str, job_id: str, *targets: str) -> None:
    """Walk a job through states with the real state machine, as a worker would."""
    from framefleet.core.states import JobState
    from framefleet.db.session import session_scope
    from framefleet.jobs import state_machine

    with session_scope(database_url) as session:
        for target in targets:
            state_machine.transition(session, job_id, JobState(target), reason=f"test moved it to {target}")


def parse_sse(text: str) -> list[dict[str, str]]:
    """SSE messages as dicts of their fields; a comment-only message is {"comment": ...}."""
    messages = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        message: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                message["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(": ")
                message[name] = value
        messages.append(message)
    return messages
