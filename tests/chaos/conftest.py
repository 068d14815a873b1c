"""Chaos fixtures: an isolated stack per module (its own Redis, database and media root) with real worker and
beat processes on fast heartbeat/reaper/retry settings, plus helpers to find and kill what runs a job.

Trials: `FRAMEFLEET_CHAOS_TRIALS` (default 2, the short form inside `make test`; 10 for the long form).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.conftest import make_clip
from tests.isolated import private_database, settings_env

TRIALS = int(os.environ.get("FRAMEFLEET_CHAOS_TRIALS", "2"))
TERMINAL = {"succeeded", "failed", "canceled"}

FAST = {
    "FRAMEFLEET_ENV": "test",
    "FRAMEFLEET_LOG_FORMAT": "json",
    "FRAMEFLEET_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "FRAMEFLEET_HEARTBEAT_TTL_SECONDS": "2",
    "FRAMEFLEET_REAPER_INTERVAL_SECONDS": "0.5",
    "FRAMEFLEET_RECONCILE_INTERVAL_SECONDS": "1",
    "FRAMEFLEET_RECONCILE_GRACE_SECONDS": "2",
    "FRAMEFLEET_RETRY_PROMOTE_INTERVAL_SECONDS": "0.2",
    "FRAMEFLEET_BEAT_LEADER_TTL_SECONDS": "3",
    "FRAMEFLEET_RETRY_BASE_SECONDS": "0.2",
    "FRAMEFLEET_RETRY_CAP_SECONDS": "1",
    "FRAMEFLEET_RETRY_MAX_ATTEMPTS": "3",
    "FRAMEFLEET_RETRY_OVERRIDES": "{}",
    "FRAMEFLEET_AGING_SECONDS": "0",
    "FRAMEFLEET_AGING_INTERVAL_SECONDS": "0.5",
    "FRAMEFLEET_SHUTDOWN_GRACE_SECONDS": "3",
    "FRAMEFLEET_ADMISSION_CACHE_SECONDS": "0",
    "FRAMEFLEET_PROGRESS_DB_INTERVAL": "0.5",
    "FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD": "0",
}


def _ready_check(log: Path) -> Callable[[], bool]:
    return lambda: b"ready." in log.read_bytes()


@dataclass
class Stack:
    """One isolated FrameFleet: env for child processes, and the processes this module started."""

    env: dict[str, str]
    root: Path
    redis: services.RedisServer
    media: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _count: int = 0

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def start_worker(
        self,
        name: str | None = None,
        *,
        pool: str = "cpu",
        concurrency: int = 1,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        self._count += 1
        name = name or f"w{self._count}"
        proc = services.start_worker(
            {**self.env, **(env or {})}, self.log(name), pool=pool, concurrency=concurrency, name=name
        )
        self.procs.append(proc)
        return proc

    def start_workers(self, *names: str, **overrides: str) -> list[subprocess.Popen[bytes]]:
        """Several workers started side by side (their start-ups overlap); returns once all are ready."""
        procs = []
        for name in names:
            log = self.log(name)
            log.parent.mkdir(parents=True, exist_ok=True)
            argv = [
                sys.executable,
                "-m",
                "framefleet.cli.main",
                "worker",
                "--pool",
                "cpu",
                "--name",
                f"{name}@%h",
            ]
            proc = subprocess.Popen(
                argv,
                env={**self.env, **overrides},
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs.append(proc)
            procs.append((proc, log))
        for proc, log in procs:
            services.wait_until(_ready_check(log), 60, f"worker ({log})", proc)
        return [proc for proc, _ in procs]

    def start_beat(self, **overrides: str) -> subprocess.Popen[bytes]:
        log = self.log(f"beat-{len(self.procs)}")
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "framefleet.cli.main", "beat"],
            env={**self.env, **overrides},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        services.wait_until(
            lambda: b"maintenance loop started" in log.read_bytes(), 60, f"beat ({log})", proc
        )
        return proc

    def start_api(self, port: int) -> subprocess.Popen[bytes]:
        log = self.log(f"api-{port}-{len(self.procs)}")
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "framefleet.cli.main", "api", "--port", str(port)],
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        services.wait_until(lambda: services.port_open(port), 60, f"api ({log})", proc)
        return proc

    def restart_redis(self) -> None:
        """Kill Redis and start an empty one on the same port (a restart without persistence)."""
        os.killpg(self.redis.proc.pid, signal.SIGKILL)
        self.redis.proc.wait(10)
        self.redis = services.start_redis(self.root / "redis2", port=self.redis.port)

    def stop_all(self) -> None:
        # Signal every group first, then wait: the graceful shutdowns overlap instead of adding up.
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            services.stop(proc, timeout=15)
        self.procs.clear()


@contextlib.contextmanager
def isolated_stack(
    test_env: dict[str, str],
    database_url: str,
    root: Path,
    redis: services.RedisServer,
    redis_url: str,
    overrides: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A stack on its own database and media root, using the Redis at `redis_url`, with FAST settings (and
    `overrides`); this process's settings point at it while it lives, and every process it started is
    stopped at the end."""
    url = private_database(database_url, root)
    media = root / "media"
    (media / "outputs").mkdir(parents=True)
    values = {
        **FAST,
        "FRAMEFLEET_DATA_DIR": str(root / "data"),
        "FRAMEFLEET_DATABASE_URL": url,
        "FRAMEFLEET_REDIS_URL": redis_url,
        "FRAMEFLEET_STORAGE_ROOTS": f'["{media}"]',
        "FRAMEFLEET_OUTPUT_ROOT": (media / "outputs").as_uri(),
        # The clips are a library every tenant reads; `full` is a small disk any tenant may write to.
        "FRAMEFLEET_SHARED_STORAGE": f'["{(media / "inputs").as_uri()}"]',
        "FRAMEFLEET_SHARED_STORAGE_WRITABLE": f'["{(media / "full").as_uri()}"]',
        **(overrides or {}),
    }
    with settings_env(values):
        chaos = Stack(env={**test_env, **values}, root=root, redis=redis, media=media)
        try:
            yield chaos
        finally:
            chaos.stop_all()


@pytest.fixture(scope="module")
def stack(
    test_env: dict[str, str],
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    """An isolated stack for one chaos module, on a Redis of its own."""
    root = tmp_path_factory.mktemp(f"chaos-{request.module.__name__.rsplit('.', 1)[-1]}")
    redis = services.start_redis(root / "redis")
    chaos: Stack | None = None
    try:
        with isolated_stack(test_env, database_url, root, redis, redis.url) as chaos:
            yield chaos
    finally:
        # restart_redis may have replaced the server the stack started with.
        services.stop(chaos.redis.proc if chaos else redis.proc)


@pytest.fixture()
def api(stack: Stack) -> Iterator[Any]:
    """The API in this process, bound to the module's stack."""
    from fastapi.testclient import TestClient

    from framefleet.api.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture()
def key(stack: Stack) -> str:
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    with session_scope() as session:
        raw, _ = create_key(session, tenant=f"chaos-{uuid.uuid4().hex[:8]}")
    return raw


@pytest.fixture(scope="module")
def clips(stack: Stack) -> dict[str, Path]:
    from framefleet.media.ffmpeg import ffmpeg_path

    ff = ffmpeg_path()
    return {
        "tiny": make_clip(ff, stack.media / "inputs" / "tiny.mp4", seconds=0.2, size="160x120", audio=False),
        "short": make_clip(ff, stack.media / "inputs" / "short.mp4", seconds=1, size="160x120"),
        "long": make_clip(ff, stack.media / "inputs" / "long.mp4", seconds=20, size="320x240"),
    }


# An encode of `long` that takes a few seconds on two cores: long enough to kill mid-way.
SLOW_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "hevc", "preset": "fast", "height": 240},
}
# Several seconds more: outlasts the shutdown grace period.
SLOWER_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "hevc", "preset": "slow", "height": 240},
}
TINY_OUTPUT = {"name": "main", "container": "ts", "video": {"preset": "ultrafast"}}


def submit(api: Any, key: str, spec: dict[str, Any], **params: Any) -> dict[str, Any]:
    # Chaos tests submit the same spec again and again and need each job really encoded (a worker busy,
    # an ffmpeg to kill): the result cache would serve the repeats from the first job's outputs.
    spec = {"cache": False, **spec}
    response = api.post("/v1/jobs", json=spec, headers={"X-API-Key": key}, params=params)
    assert response.status_code == 201, response.text
    return dict(response.json())


def fetch(api: Any, key: str, job_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return dict(response.json())


def history(api: Any, key: str, job_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/jobs/{job_id}/history", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def wait_state(api: Any, key: str, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = fetch(api, key, job_id)
        if job["state"] in states:
            return job
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not reach {states} in {timeout}s: {job}")


def wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"{what}: not within {timeout}s")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def output_files(stack: Stack, job_id: str) -> list[str]:
    """The files in the job's own output folder, `<output root>/tenants/<its tenant>/<job id>/`."""
    folders = list((stack.media / "outputs" / "tenants").glob(f"*/{job_id}"))
    assert len(folders) <= 1, folders
    return sorted(p.name for p in folders[0].iterdir()) if folders else []
