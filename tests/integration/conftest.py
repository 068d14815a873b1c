"""Fixtures for tests that run jobs on a real Celery worker with real ffmpeg."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    proc, endpoint = services.start_moto()
    yield endpoint
    services.stop(proc)


@pytest.fixture(scope="session")
def worker_env(test_env: dict[str, str], moto_endpoint: str) -> dict[str, str]:
    """Environment for worker processes: the test settings plus S3 credentials for moto."""
    return {
        **test_env,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "FRAMEFLEET_S3_ENDPOINT_URL": moto_endpoint,
        # Lets the bad-input tests point at a closed loopback port to get "unreachable host".
        "FRAMEFLEET_HTTP_ALLOW_PRIVATE": "true",
        # These tests check how a first attempt ends; retries (which need a beat) are tested in tests/chaos.
        "FRAMEFLEET_RETRY_MAX_ATTEMPTS": "1",
    }


@pytest.fixture(scope="module")
def worker(worker_env: dict[str, str], session_dir: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """One real CPU worker process for the module."""
    log = session_dir / "logs" / f"worker-{request.module.__name__}.log"
    proc = services.start_worker(worker_env, log)
    yield proc
    services.stop(proc, timeout=20)


@pytest.fixture()
def api(test_env: dict[str, str]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from framefleet.api.app import create_app

    with TestClient(create_app()) as client:
        yield client


def wait_for_state(
    get: Callable[[], dict[str, Any]], states: set[str], timeout: float = 120
) -> dict[str, Any]:
    """Poll a job until it reaches one of `states`; fail with the job's last view otherwise."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = get()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    pytest.fail(f"job did not reach {states} in {timeout}s: {job}")
