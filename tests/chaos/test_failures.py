"""Failures from outside the job: a full output disk, ffmpeg killed by someone else, a job past its time
limit, cancel in every state; and what the API says about workers, queues and impossible jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from framefleet.db.models import Job
from framefleet.db.session import session_scope
from tests import services
from tests.chaos.conftest import (
    SLOW_OUTPUT,
    TERMINAL,
    Stack,
    alive,
    fetch,
    history,
    output_files,
    submit,
    wait,
    wait_state,
)
from tests.factories import queued_job
from tests.services import ffmpeg_pids

pytestmark = pytest.mark.integration

WORKER_ENV = {
    # The retrying-state cancel below needs a job that waits a long time before its next attempt.
    "FRAMEFLEET_RETRY_OVERRIDES": '{"low": {"base_seconds": 3600, "cap_seconds": 3600}}',
    "FRAMEFLEET_HTTP_ALLOW_PRIVATE": "true",
}


@pytest.fixture(scope="module")
def beat(stack: Stack) -> subprocess.Popen[bytes]:
    return stack.start_beat()


@pytest.fixture(scope="module")
def worker(stack: Stack, beat: Any) -> subprocess.Popen[bytes]:
    return stack.start_worker("f1", env=WORKER_ENV)


def start_worker_on_full_disk(stack: Stack, folder: Path, size: str) -> subprocess.Popen[bytes]:
    """A worker in its own mount namespace where `folder` is a tiny tmpfs (a full disk, for real)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = stack.log("full-disk")
    log.parent.mkdir(parents=True, exist_ok=True)
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    script = (
        'mount -t tmpfs -o size="$1" tmpfs "$2" && '
        'exec "$3" -m framefleet.cli.main worker --pool cpu --name full@%h'
    )
    proc = subprocess.Popen(
        [*namespace, "sh", "-c", script, "sh", size, str(folder), sys.executable],
        env=stack.env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.procs.append(proc)
    services.wait_until(lambda: b"ready." in log.read_bytes(), 60, f"worker on a full disk ({log})", proc)
    return proc


def test_full_output_disk_fails_resource_exhausted_and_publishes_nothing(
    stack: Stack, beat: Any, api: Any, key: str, clips: dict[str, Path]
) -> None:
    folder = stack.media / "full"
    proc = start_worker_on_full_disk(stack, folder, "64k")
    seen = Path(f"/proc/{proc.pid}/root") / folder.relative_to("/")  # the folder as that worker sees it
    spec = {
        "input": clips["short"].as_uri(),
        "outputs": [
            # fits on the small disk, and is published first...
            {
                "name": "a",
                "container": "ts",
                "video": {"codec": "none"},
                "audio": {"bitrate_kbps": 32},
                "destination": (folder / "a.ts").as_uri(),
            },
            # ...this lossless one does not: the first must be taken back.
            {
                "name": "b",
                "container": "mkv",
                "video": {"codec": "h264", "crf": 0, "preset": "ultrafast"},
                "destination": (folder / "b.mkv").as_uri(),
            },
        ],
    }
    job = submit(api, key, spec)
    final = wait_state(api, key, job["id"], TERMINAL, 60)
    assert (final["state"], final["failure_class"]) == ("failed", "resource_exhausted"), final
    assert final["failures"] == 3, "resource_exhausted is retried, up to the attempts allowed"
    assert "No space left on device" in final["error"]
    assert final["outputs"] == []
    assert sorted(os.listdir(seen)) == [], "a partial output (or a temporary file) was left published"
    services.stop(proc, timeout=15)
    stack.procs.remove(proc)


def test_ffmpeg_killed_from_outside_is_classified_and_retried(
    worker: Any, api: Any, key: str, clips: dict[str, Path], stack: Stack
) -> None:
    job = submit(api, key, {"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT]})
    pids = wait(lambda: ffmpeg_pids(job["id"]), 30, "ffmpeg started")
    time.sleep(0.3)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    final = wait_state(api, key, job["id"], TERMINAL, 60)
    assert (final["state"], final["attempt"], final["failures"]) == ("succeeded", 2, 1), final
    retry = next(h for h in history(api, key, job["id"]) if h["to_state"] == "retrying")
    assert "ffmpeg encode failed" in retry["reason"] and retry["attempt"] == 1
    with session_scope() as session:
        transitions = session.execute(
            sa.text("SELECT count(*) FROM job_transitions WHERE job_id = :id AND to_state = 'running'"),
            {"id": job["id"]},
        ).scalar_one()
    assert transitions == 2
    assert output_files(stack, job["id"]) == ["main.mp4"]


def test_a_job_past_its_time_limit_fails_timeout(
    worker: Any, api: Any, key: str, clips: dict[str, Path]
) -> None:
    bad = api.post(
        "/v1/jobs",
        json={"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT], "max_run_seconds": 0},
        headers={"X-API-Key": key},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "max_run_seconds"
    job = submit(api, key, {"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT], "max_run_seconds": 1})
    assert job["max_run_seconds"] == 1
    pids = wait(lambda: ffmpeg_pids(job["id"]), 30, "ffmpeg started")
    final = wait_state(api, key, job["id"], TERMINAL, 30)
    assert (final["state"], final["failure_class"], final["attempt"]) == ("failed", "timeout", 1), final
    assert "time limit" in final["error"]
    assert not any(alive(p) for p in pids)
    assert final["outputs"] == []


def _waiting_job(key: str, state: str) -> str:
    """A job nobody will pick up (the gpu pool has no worker here), put in `state` for the test."""
    job_id = queued_job(key, {"input": "file:///nowhere.mp4", "outputs": [{"container": "mp4"}]}, pool="gpu")
    if state == "pending":
        with session_scope() as session:
            session.execute(sa.update(Job).where(Job.id == job_id).values(state="pending"))
    return job_id


def test_cancel_in_every_state(worker: Any, api: Any, key: str, clips: dict[str, Path], stack: Stack) -> None:
    headers = {"X-API-Key": key}

    def cancel(job_id: str) -> Any:
        return api.post(f"/v1/jobs/{job_id}/cancel", headers=headers)

    # pending and queued: canceled at once, never run
    for state in ("pending", "queued"):
        job_id = _waiting_job(key, state)
        response = cancel(job_id)
        assert (response.status_code, response.json()["state"]) == (200, "canceled"), state
        assert [h["to_state"] for h in history(api, key, job_id)][-1] == "canceled"

    # retrying: canceled while it waits for its next attempt, and the retry never happens
    retrying = submit(
        api, key, {"input": "http://127.0.0.1:9/x.mp4", "outputs": [{"container": "mp4"}], "priority": "low"}
    )
    wait_state(api, key, retrying["id"], {"retrying"}, 30)
    assert cancel(retrying["id"]).json()["state"] == "canceled"
    time.sleep(1.0)
    assert fetch(api, key, retrying["id"])["state"] == "canceled"

    # running: ffmpeg is killed, nothing is published
    running = submit(api, key, {"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT]})
    pids = wait(lambda: ffmpeg_pids(running["id"]), 30, "ffmpeg started")
    assert cancel(running["id"]).status_code == 202
    final = wait_state(api, key, running["id"], TERMINAL, 15)
    assert final["state"] == "canceled" and final["outputs"] == []
    assert not any(alive(p) for p in pids) and output_files(stack, running["id"]) == []

    # terminal: every ended job answers 409
    done = submit(api, key, {"input": clips["tiny"].as_uri(), "outputs": [{"container": "ts"}]})
    assert wait_state(api, key, done["id"], TERMINAL, 30)["state"] == "succeeded"
    for job_id in (done["id"], running["id"], retrying["id"]):
        response = cancel(job_id)
        assert response.status_code == 409 and "already ended" in response.json()["detail"]


def test_workers_queues_and_admission(worker: Any, api: Any, key: str, clips: dict[str, Path]) -> None:
    headers = {"X-API-Key": key}
    workers = api.get("/v1/workers", headers=headers).json()["items"]
    mine = [w for w in workers if w["node"].startswith("f1@")]
    assert len(mine) == 1 and mine[0]["status"] == "alive" and mine[0]["pool"] == "cpu"
    caps = mine[0]["capabilities"]
    assert caps["video"]["cpu"] == ["av1", "h264", "hevc", "vp9"] and "libvmaf" in caps["filters"]
    assert caps["trials"]["h264_nvenc"]["ok"] is False and caps["trials"]["h264_nvenc"]["error"]
    assert {"cpu_count", "memory_mb"} <= set(caps["host"]) and "devices" in caps["gpus"]

    job = submit(api, key, {"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT]})
    wait_state(api, key, job["id"], {"running"}, 30)

    def shows_current_job() -> bool:
        items = api.get("/v1/workers", headers=headers).json()["items"]
        return any(w["current_job"] == job["id"] for w in items)

    wait(shows_current_job, 5, "GET /v1/workers to show the running job")
    api.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)

    queues = api.get("/v1/queues", headers=headers).json()
    assert [q["name"] for q in queues["items"]][:5] == [
        "cpu.live",
        "cpu.high",
        "cpu.normal",
        "cpu.low",
        "cpu.batch",
    ]
    assert len(queues["items"]) == 10 and all(q["depth"] >= 0 for q in queues["items"])

    refused = api.post(
        "/v1/jobs",
        headers=headers,
        json={
            "input": clips["tiny"].as_uri(),
            "outputs": [{"container": "mp4", "video": {"codec": "av1"}}],
            "hardware": "gpu",
        },
    )
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["type"] == "https://framefleet.dev/problems/unschedulable"
    assert body["detail"] == "no worker can encode av1 on a GPU"
    assert body["errors"][0]["field"] == "outputs.0.video.codec"
    auto = submit(api, key, {"input": clips["tiny"].as_uri(), "outputs": [{"container": "ts"}]})
    assert auto["pool"] == "cpu"
    assert wait_state(api, key, auto["id"], TERMINAL, 30)["state"] == "succeeded"


def test_cancel_of_a_job_whose_worker_died_ends_canceled(
    stack: Stack, worker: Any, api: Any, key: str, clips: dict[str, Path]
) -> None:
    stack.start_worker("doomed")
    job = submit(api, key, {"input": clips["long"].as_uri(), "outputs": [SLOW_OUTPUT]})
    pids = wait(lambda: ffmpeg_pids(job["id"]), 30, "ffmpeg started")
    with session_scope() as session:
        worker_id = session.get(Job, job["id"]).worker  # type: ignore[union-attr]
    assert worker_id
    pool_pid = int(worker_id.rsplit(":", 1)[1])
    main_pid = int(Path(f"/proc/{pool_pid}/stat").read_text().split(")")[-1].split()[1])
    proc = next(p for p in stack.procs if p.pid == main_pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait(lambda: not any(alive(p) for p in pids), 2, "ffmpeg to die with its worker")
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": key}).status_code == 202
    final = wait_state(api, key, job["id"], TERMINAL, 30)
    assert final["state"] == "canceled", "the reaper must not retry a job its client canceled"
    items = api.get("/v1/workers", headers={"X-API-Key": key}).json()["items"]
    assert next(w for w in items if w["id"] == worker_id)["status"] in {"stopped", "lost"}
    stack.procs.remove(proc)
