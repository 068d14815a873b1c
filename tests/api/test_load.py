"""One API process under load over loopback: many mixed requests, then a few hundred event streams.

The API runs as its own uvicorn process (as in production) with the session's real database and Redis;
the load comes from plain asyncio connections (bench/httpclient.py), so the client costs little CPU.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from bench.httpclient import Answer, Connection, open_stream
from framefleet.api.hub import CLIENT_NAME
from framefleet.events import publish
from tests import services
from tests.api.conftest import KeyMaker, job_body, move_job

pytestmark = pytest.mark.timeout(240)

HOST = "127.0.0.1"


@pytest.fixture()
def api_process(test_env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """`framefleet api` on a free port; yields the port."""
    port = services.free_port()
    # Measures the API itself: the per-key rate limits (test_ratelimit.py) would refuse most of the load.
    env = {
        **test_env,
        "FRAMEFLEET_ADMISSION_CHECK": "false",
        "FRAMEFLEET_LOG_LEVEL": "WARNING",
        "FRAMEFLEET_RATE_LIMITS_ENABLED": "false",
    }
    log = (tmp_path / "api.log").open("w")
    command = [str(Path(sys.executable).parent / "framefleet"), "api", "--host", HOST, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        services.wait_until(
            lambda: httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200, 30, "api", proc
        )
        yield port
    finally:
        services.stop(proc)
        log.close()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- Part A: mixed requests

Plan = list[tuple[str, str, dict[str, str], bytes, int]]


def _mix(key: str, job_id: str) -> Plan:
    """(method, path, headers, body, expected status) of each kind of request, good and bad."""
    good = {"X-API-Key": key, "Content-Type": "application/json"}
    spec = json.dumps(job_body(hardware="gpu", priority="batch")).encode()
    return [
        ("GET", f"/v1/jobs/{job_id}", good, b"", 200),
        ("GET", "/v1/jobs?limit=5", good, b"", 200),
        ("POST", "/v1/jobs", good, spec, 201),
        ("GET", f"/v1/jobs/{job_id}", {"X-API-Key": f"ff_bad-{uuid.uuid4().hex}"}, b"", 401),
        ("POST", "/v1/jobs", {"Content-Type": "application/json"}, b"{malformed", 401),
        ("GET", f"/v1/jobs/{uuid.uuid4()}", good, b"", 404),
        ("POST", "/v1/jobs", good, b'{"input": 3}', 422),
    ]


async def _hammer(port: int, plan: Plan, concurrency: int) -> list[tuple[int, Answer]]:
    results: list[tuple[int, Answer]] = []
    queue = list(enumerate(plan))

    async def client() -> None:
        connection = Connection(HOST, port)
        try:
            while queue:
                index, (method, path, headers, body, _) = queue.pop()
                results.append((index, await connection.request(method, path, headers, body)))
        finally:
            await connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return results


def test_mixed_load_gets_no_5xx_and_the_api_stays_responsive(api_process: int, make_key: KeyMaker) -> None:
    key = make_key()["X-API-Key"]
    base = f"http://{HOST}:{api_process}"
    created = httpx.post(f"{base}/v1/jobs", json=job_body(), headers={"X-API-Key": key})
    assert created.status_code == 201, created.text
    kinds = _mix(key, created.json()["id"])
    plan = [kinds[i % len(kinds)] for i in range(2000)]

    started = time.perf_counter()
    results = asyncio.run(_hammer(api_process, plan, concurrency=200))
    elapsed = time.perf_counter() - started

    assert len(results) == 2000
    server_errors = [(plan[i][:2], a.status, a.body[:200]) for i, a in results if a.status >= 500]
    assert server_errors == [], f"{len(server_errors)} 5xx, first: {server_errors[:3]}"
    wrong = [(plan[i][:2], plan[i][4], a.status, a.body[:200]) for i, a in results if a.status != plan[i][4]]
    assert wrong == [], f"{len(wrong)} unexpected answers, first: {wrong[:3]}"
    latencies = [a.seconds for _, a in results]
    p99 = _p99(latencies)
    print(f"2000 mixed requests at concurrency 200: {2000 / elapsed:.0f} req/s, p99 {p99 * 1000:.0f} ms")
    assert p99 < 5.0

    after = time.perf_counter()
    answer = httpx.get(f"{base}/v1/jobs/{created.json()['id']}", headers={"X-API-Key": key}, timeout=5)
    assert answer.status_code == 200
    assert time.perf_counter() - after < 1.0


# ---------------------------------------------------------------- Part B: a few hundred event streams

STREAMS = 300
EVENTS = 40


def _sse_connections(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == CLIENT_NAME)


async def _follow(port: int, key: str, job_id: str) -> tuple[int, list[int], str | None]:
    """(status, the `seq` of each progress event in order, the type of the last event)."""
    stream = await open_stream(HOST, port, f"/v1/jobs/{job_id}/events", {"X-API-Key": key})
    seqs: list[int] = []
    last: str | None = None
    try:
        if stream.status != 200:
            return stream.status, seqs, None
        async for event in stream.events():
            last = event.event
            if event.event == "progress":
                seqs.append(json.loads(event.data)["seq"])
    finally:
        stream.close()
    return 200, seqs, last


async def _probe(port: int, key: str, job_id: str) -> list[Answer]:
    connection = Connection(HOST, port)
    answers = [
        await connection.request("GET", f"/v1/jobs/{job_id}", {"X-API-Key": key}),
        await connection.request("GET", "/readyz"),
    ]
    await connection.close()
    return answers


def test_hundreds_of_streams_share_one_reader_and_hold_nothing_else(
    api_process: int, make_key: KeyMaker, api_settings: Any, redis_client: redis.Redis
) -> None:
    key = make_key()["X-API-Key"]
    created = httpx.post(f"http://{HOST}:{api_process}/v1/jobs", json=job_body(), headers={"X-API-Key": key})
    job_id = created.json()["id"]
    move_job(api_settings.database_url, job_id, "running")
    connections_before = _sse_connections(redis_client)

    async def scenario() -> tuple[list[tuple[int, list[int], str | None]], list[Answer], int]:
        early = [asyncio.create_task(_follow(api_process, key, job_id)) for _ in range(STREAMS // 2)]
        await asyncio.sleep(1.0)
        for seq in range(EVENTS // 2):
            publish(redis_client, job_id, "progress", {"seq": seq})
            await asyncio.sleep(0.01)
        # Late joiners arrive while events flow: history first, then live, without gaps or repeats.
        late = [asyncio.create_task(_follow(api_process, key, job_id)) for _ in range(STREAMS // 2)]
        for seq in range(EVENTS // 2, EVENTS):
            publish(redis_client, job_id, "progress", {"seq": seq})
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        probes = await _probe(api_process, key, job_id)
        connections = _sse_connections(redis_client)
        publish(redis_client, job_id, "done", {"state": "succeeded"})
        return await asyncio.gather(*early, *late), probes, connections

    streams, probes, connections = asyncio.run(scenario())

    statuses = sorted({status for status, _, _ in streams})
    assert statuses == [200], statuses
    assert all(seqs == list(range(EVENTS)) for _, seqs, _ in streams), [s for _, s, _ in streams][:3]
    assert all(last == "done" for _, _, last in streams)
    # While they were all open, the database-backed endpoints answered at once.
    assert [p.status for p in probes] == [200, 200]
    assert max(p.seconds for p in probes) < 1.0, [p.seconds for p in probes]
    # One reader and a few replay connections, however many streams.
    assert connections - connections_before <= 5, connections
