"""Redis Sentinel: the primary is killed, Sentinel promotes the replica, and the API, the worker and the beat
follow the new master through their redis+sentinel:// URL with no reconfiguration."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from framefleet.events import stream_key
from framefleet.redis_client import get_redis
from tests import services
from tests.api.conftest import parse_sse
from tests.chaos.conftest import (
    SLOW_OUTPUT,
    TERMINAL,
    TINY_OUTPUT,
    Stack,
    history,
    isolated_stack,
    output_files,
    submit,
    wait,
    wait_state,
)
from tests.isolated import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.SentinelGroup]:
    group = services.start_sentinel_group(tmp_path_factory.mktemp("sentinel"), down_after_ms=1000)
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture(scope="module")
def stack(
    test_env: dict[str, str],
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    sentinels: services.SentinelGroup,
) -> Iterator[Stack]:
    """The chaos stack with every Redis user (broker, events, locks) on the Sentinel group."""
    root = tmp_path_factory.mktemp("chaos-sentinel")
    # A worker's lease must outlive a failover, as in production (30 s TTL against Sentinel's own timeouts):
    # FAST's 2 s would let the reaper take back a job only because Redis was away for 2-3 s.
    lease = {"FRAMEFLEET_HEARTBEAT_INTERVAL_SECONDS": "1", "FRAMEFLEET_HEARTBEAT_TTL_SECONDS": "10"}
    with isolated_stack(test_env, database_url, root, sentinels.primary, sentinels.url, lease) as chaos:
        yield chaos


def runs(api: Any, key: str, job_id: str) -> int:
    return sum(1 for row in history(api, key, job_id) if row["to_state"] == "running")


def test_jobs_keep_running_across_a_sentinel_failover(
    stack: Stack, sentinels: services.SentinelGroup, api: Any, key: str, clips: dict[str, Path]
) -> None:
    assert stack.env["FRAMEFLEET_REDIS_URL"].startswith("redis+sentinel://")
    assert sentinels.master_port() == sentinels.primary.port
    stack.start_beat()
    stack.start_worker("s1")
    spec = {"input": clips["tiny"].as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu"}
    first = submit(api, key, spec)
    wait_state(api, key, first["id"], {"succeeded"}, timeout=60)

    os.killpg(sentinels.primary.proc.pid, signal.SIGKILL)
    sentinels.primary.proc.wait(10)
    killed = time.monotonic()
    wait(lambda: sentinels.master_port() == sentinels.replica.port, 30, "Sentinel to promote the replica")
    promoted = time.monotonic() - killed
    # This process's shared client reaches the new master (a write: the replica would refuse it).
    get_redis().set("framefleet:test:after-failover", "1")

    second = submit(api, key, spec)  # the API publishes to the new master through the same URL
    wait_state(api, key, second["id"], {"succeeded"}, timeout=60)
    recovered = time.monotonic() - killed
    assert runs(api, key, first["id"]) == 1
    assert runs(api, key, second["id"]) == 1
    # The worker's events reached the new master, and the API's event stream (its asyncio clients) reads them.
    assert get_redis().xlen(stream_key(second["id"])) > 0
    url = f"/v1/jobs/{second['id']}/events"
    with api.stream("GET", url, headers={"X-API-Key": key}) as response:
        assert response.status_code == 200
        events = [e for e in parse_sse("".join(response.iter_text())) if "event" in e]
    assert events[-1]["event"] == "done" and '"succeeded"' in events[-1]["data"]
    print(f"sentinel failover: kill-to-promotion {promoted:.1f}s, kill-to-next-job-done {recovered:.1f}s")


def test_a_job_encoding_through_the_failover_finishes_once_with_one_set_of_outputs(
    stack: Stack, key: str, clips: dict[str, Path], tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from framefleet.api.app import create_app

    # A group of its own: the module's has no replica left to promote.
    group = services.start_sentinel_group(tmp_path / "sentinel", down_after_ms=1000)
    stack.stop_all()
    stack.env["FRAMEFLEET_REDIS_URL"] = group.url
    try:
        with settings_env({"FRAMEFLEET_REDIS_URL": group.url}), TestClient(create_app()) as api:
            stack.start_beat()
            stack.start_worker("s2")
            # Slower than SLOW_OUTPUT: on a quiet machine `fast` HEVC of this clip ends within the 2-3 s that
            # a read through the API waits for Sentinel, and the kill would land after the encode.
            slower = {**SLOW_OUTPUT, "video": {**SLOW_OUTPUT["video"], "preset": "slow"}}
            spec = {"input": clips["long"].as_uri(), "outputs": [slower], "hardware": "cpu"}
            job = submit(api, key, spec)
            wait_state(api, key, job["id"], {"running"}, timeout=60)
            time.sleep(0.5)  # into the encode
            os.killpg(group.primary.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            killed_at = datetime.now(UTC)
            done = wait_state(api, key, job["id"], TERMINAL, timeout=120)
            took = time.monotonic() - killed
            assert done["state"] == "succeeded", done
            # The kill landed mid-encode: the job finished after it (read from the history, not at kill time).
            finished = [h for h in history(api, key, job["id"]) if h["to_state"] == "succeeded"]
            assert datetime.fromisoformat(finished[0]["at"]) > killed_at, (finished, killed_at)
            assert runs(api, key, job["id"]) == 1, [h["reason"] for h in history(api, key, job["id"])]
            assert output_files(stack, job["id"]) == ["main.mp4"]
            print(f"sentinel failover mid-encode: kill-to-done {took:.1f}s, ran once, one set of outputs")
    finally:
        stack.stop_all()
        group.stop()
