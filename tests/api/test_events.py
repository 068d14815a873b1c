"""GET /v1/jobs/{id}/events: Server-Sent Events from the job's Redis Stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.core.states import JobState
from framefleet.db.session import session_scope
from framefleet.events import publish, stream_key
from framefleet.jobs import state_machine
from tests import services
from tests.api.conftest import KeyMaker, job_body, move_job, parse_sse, submit

pytestmark = pytest.mark.timeout(60)


def read_stream(
    client: TestClient, job_id: str, headers: dict[str, str], **params: str
) -> list[dict[str, str]]:
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, params=params) as response:
        assert response.status_code == 200, response.read()
        return parse_sse("".join(response.iter_text()))


def _events(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [m for m in messages if "event" in m]


@pytest.fixture()
def fast_keepalive_client(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings.model_copy(update={"sse_keepalive_seconds": 0.05}))) as client:
        yield client


def test_stream_replays_history_and_stops_after_done(
    client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    job = submit(client, auth)
    ids = [
        publish(redis_client, job["id"], "state", {"state": "running"}),
        publish(redis_client, job["id"], "progress", {"percent": 50.0}),
        publish(redis_client, job["id"], "done", {"state": "succeeded"}),
    ]
    publish(redis_client, job["id"], "progress", {"percent": 99.0})  # after done: never sent

    with client.stream("GET", f"/v1/jobs/{job['id']}/events", headers=auth) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        text = "".join(response.iter_text())

    assert text.startswith(f'id: {ids[0]}\nevent: state\ndata: {{"state":"running"}}\n\n')
    events = _events(parse_sse(text))
    assert [e["id"] for e in events] == ids
    assert [e["event"] for e in events] == ["state", "progress", "done"]
    assert events[1]["data"] == '{"percent":50.0}'


def test_resume_after_last_event_id(
    client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    job = submit(client, auth)
    first = publish(redis_client, job["id"], "progress", {"percent": 10.0})
    second = publish(redis_client, job["id"], "progress", {"percent": 60.0})
    done = publish(redis_client, job["id"], "done", {"state": "succeeded"})

    by_header = _events(read_stream(client, job["id"], {**auth, "Last-Event-ID": first}))
    assert [e["id"] for e in by_header] == [second, done]

    by_query = _events(read_stream(client, job["id"], auth, last_event_id=second))
    assert [e["id"] for e in by_query] == [done]


def test_bad_last_event_id_is_422(client: TestClient, auth: dict[str, str]) -> None:
    job = submit(client, auth)
    response = client.get(f"/v1/jobs/{job['id']}/events", headers={**auth, "Last-Event-ID": "banana"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Last-Event-ID"


def test_late_client_gets_whole_history_and_done(
    client: TestClient, auth: dict[str, str], api_settings: Settings, redis_client: redis.Redis
) -> None:
    job = submit(client, auth)
    with session_scope(api_settings.database_url) as session:
        for target in ("running", "succeeded"):
            moved = state_machine.transition(session, job["id"], JobState(target), reason=target)
            session.commit()
            state_machine.announce(redis_client, moved, reason=target, ttl_seconds=60)
    publish_time = time.monotonic()

    events = _events(read_stream(client, job["id"], auth))

    assert time.monotonic() - publish_time < 5
    assert [(e["event"], e["data"].split(",")[0]) for e in events] == [
        ("state", '{"state":"running"'),
        ("state", '{"state":"succeeded"'),
        ("done", '{"state":"succeeded"'),
    ]


def test_live_events_and_keepalive(
    fast_keepalive_client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    job = submit(fast_keepalive_client, auth)

    def worker() -> None:
        time.sleep(0.4)
        publish(redis_client, job["id"], "progress", {"percent": 42.0})
        time.sleep(0.2)
        publish(redis_client, job["id"], "done", {"state": "succeeded"})

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        messages = read_stream(fast_keepalive_client, job["id"], auth)
    finally:
        thread.join()

    assert {"comment": "keep-alive"} in messages
    assert [e["event"] for e in _events(messages)] == ["progress", "done"]


def test_ended_job_without_stream_gets_done_from_database(
    fast_keepalive_client: TestClient, auth: dict[str, str], api_settings: Settings, redis_client: redis.Redis
) -> None:
    job = submit(fast_keepalive_client, auth)
    move_job(api_settings.database_url, job["id"], "running", "failed")
    redis_client.delete(stream_key(job["id"]))  # expired, or Redis was flushed

    events = _events(read_stream(fast_keepalive_client, job["id"], auth))

    assert [e["event"] for e in events] == ["done"]
    assert '"state":"failed"' in events[0]["data"]
    assert "id" not in events[0]


def test_job_ending_without_done_event_still_ends_the_stream(
    fast_keepalive_client: TestClient, auth: dict[str, str], api_settings: Settings
) -> None:
    job = submit(fast_keepalive_client, auth)

    def end_silently() -> None:
        time.sleep(0.3)
        move_job(api_settings.database_url, job["id"], "canceled")

    thread = threading.Thread(target=end_silently)
    thread.start()
    try:
        messages = read_stream(fast_keepalive_client, job["id"], auth)
    finally:
        thread.join()

    assert _events(messages)[-1]["event"] == "done"
    assert '"state":"canceled"' in _events(messages)[-1]["data"]


@pytest.fixture()
def live_server(api_settings: Settings) -> Iterator[tuple[str, FastAPI]]:
    """The API served by uvicorn on a free port (a real socket, so a client can hang up), and its app.

    Keep-alives are rare here, so only noticing the hang-up (not a failed write) can end a stream quickly.
    """
    app: FastAPI = create_app(api_settings.model_copy(update={"sse_keepalive_seconds": 30}))
    port = services.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(15)


def test_stream_stops_when_client_disconnects(
    live_server: tuple[str, FastAPI], auth: dict[str, str], redis_client: redis.Redis
) -> None:
    url, app = live_server
    with httpx.Client(base_url=url, headers=auth, timeout=10) as http:
        created = http.post("/v1/jobs", json=job_body())
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        publish(redis_client, job_id, "progress", {"percent": 1.0})
        with http.stream("GET", f"/v1/jobs/{job_id}/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("id: ")
            assert app.state.event_hub.subscribers == 1
            assert app.state.stream_limits.open == 1
        # The client hung up mid-stream: the server must drop its subscription and stream slot promptly.
        services.wait_until(lambda: app.state.event_hub.subscribers == 0, 5, "SSE stream to stop")
        services.wait_until(lambda: app.state.stream_limits.open == 0, 5, "the stream slot to be freed")
        assert app.state.event_hub.channels == 0


def test_stream_limits_answer_429_per_tenant_and_503_per_process(
    api_settings: Settings, make_key: KeyMaker, redis_client: redis.Redis
) -> None:
    limited = {"sse_max_streams": 2, "sse_max_streams_per_tenant": 1, "sse_keepalive_seconds": 30}
    app: FastAPI = create_app(api_settings.model_copy(update=limited))
    port = services.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    alice, bob, carol = make_key(), make_key(), make_key()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            jobs = {}
            for name, key in (("alice", alice), ("bob", bob), ("carol", carol)):
                jobs[name] = http.post("/v1/jobs", json=job_body(), headers=key).json()["id"]
                publish(redis_client, jobs[name], "progress", {"percent": 1.0})
            # The line iterators are kept: dropping one closes its response.
            with http.stream("GET", f"/v1/jobs/{jobs['alice']}/events", headers=alice) as first:
                first_lines = first.iter_lines()
                assert next(first_lines).startswith("id: ")
                second_of_alice = http.get(f"/v1/jobs/{jobs['alice']}/events", headers=alice)
                assert second_of_alice.status_code == 429
                assert second_of_alice.json()["type"] == "https://framefleet.dev/problems/rate-limited"
                assert second_of_alice.headers["Retry-After"] == "1"
                with http.stream("GET", f"/v1/jobs/{jobs['bob']}/events", headers=bob) as second:
                    second_lines = second.iter_lines()
                    assert next(second_lines).startswith("id: ")
                    full = http.get(f"/v1/jobs/{jobs['carol']}/events", headers=carol)
                    assert full.status_code == 503
                    assert full.headers["Retry-After"] == "1"
            services.wait_until(lambda: app.state.stream_limits.open == 0, 5, "streams to close")
            publish(redis_client, jobs["carol"], "done", {"state": "succeeded"})
            with http.stream("GET", f"/v1/jobs/{jobs['carol']}/events", headers=carol) as again:
                assert again.status_code == 200
    finally:
        server.should_exit = True
        thread.join(15)
