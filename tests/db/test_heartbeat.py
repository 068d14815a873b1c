"""Heartbeats against the real database and Redis, and the lease that stops a worker cut off from them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from framefleet.config import Settings, get_settings
from framefleet.db.models import Job, Worker
from framefleet.db.session import session_scope
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.runner import AttemptLimits, FfmpegAborted, attempt_limits, run_ffmpeg
from framefleet.redis_client import get_redis
from framefleet.worker import heartbeat, tasks
from framefleet.worker.heartbeat import Heartbeat, worker_key
from tests.factories import queued_job

CAPS = {"video": {"cpu": ["h264"], "gpu": []}, "audio": ["aac"], "filters": []}


def fast(**overrides: object) -> Settings:
    values = get_settings().model_dump()
    values.update({"heartbeat_interval_seconds": 0.2, "heartbeat_ttl_seconds": 0.8, **overrides})
    return Settings(**values)


@pytest.fixture()
def beats() -> Iterator[list[Heartbeat]]:
    made: list[Heartbeat] = []
    yield made
    for beat in made:
        beat._stop.set()
        beat._wake.set()
    heartbeat.install(None)
    with session_scope() as session:
        session.execute(sa.delete(Worker).where(Worker.id.in_([b.id for b in made])))


def test_a_heartbeat_publishes_a_key_with_a_ttl_and_a_row(beats: list[Heartbeat]) -> None:
    beat = Heartbeat(node="hb@test", pool="cpu", capabilities=CAPS, settings=fast())
    beats.append(beat)
    beat.start()
    client = get_redis()
    doc = json.loads(client.get(worker_key(beat.id)) or "{}")
    assert doc["pool"] == "cpu" and doc["capabilities"] == CAPS and doc["current_job"] is None
    assert 0 < client.pttl(worker_key(beat.id)) <= 800
    beat.set_current("job-1", 3)

    def row() -> Worker:
        with session_scope() as session:
            found = session.get(Worker, beat.id)
            assert found is not None
            return found

    deadline = time.monotonic() + 2
    while row().current_job != "job-1" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (row().current_job, row().current_attempt) == ("job-1", 3), "the current job is advertised at once"
    first = row().last_heartbeat
    time.sleep(0.5)
    assert row().last_heartbeat > first, "the thread keeps beating"
    assert beat.lease_ok()
    beat.stop()
    assert row().stopped_at is not None and client.get(worker_key(beat.id)) is None


def test_a_worker_cut_off_from_the_database_stops_its_ffmpeg(beats: list[Heartbeat]) -> None:
    # A database nobody listens on: every heartbeat fails, as in a network partition.
    cut_off = fast(database_url="postgresql://nobody@127.0.0.1:9/none")
    beat = Heartbeat(node="hb@partitioned", pool="cpu", capabilities=CAPS, settings=cut_off)
    beats.append(beat)
    assert not beat.beat()
    heartbeat.install(beat)
    started = time.monotonic()
    endless = [
        ffmpeg_path(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=160x120:rate=25",
        "-f",
        "null",
        "-",
    ]
    with attempt_limits(AttemptLimits(abort=tasks._abort_reason)), pytest.raises(FfmpegAborted) as caught:
        run_ffmpeg(endless, on_progress=None, duration=None)
    assert caught.value.reason == tasks.LEASE_LOST
    # Stopped once the fence period (TTL minus one interval) passed, before a reaper could hand it on.
    assert time.monotonic() - started < cut_off.heartbeat_ttl_seconds + 0.5


def test_a_worker_whose_lease_lapsed_renews_it_before_its_next_claim(
    beats: list[Heartbeat], tenant_key: tuple[str, str], clip: Path
) -> None:
    """Cut off (or without the database) for longer than the fence period, then back: the next job it
    takes must not be stopped by the lapsed lease a moment later (a failed attempt for nothing)."""
    _, key = tenant_key
    beat = Heartbeat(
        node="hb@back",
        pool="cpu",
        capabilities=CAPS,
        settings=fast(heartbeat_interval_seconds=5, heartbeat_ttl_seconds=12),
    )
    beats.append(beat)
    assert beat.beat()
    beat._last_ok = time.monotonic() - 60  # its last renewal was long ago; no beat is due for seconds
    assert not beat.lease_ok()
    heartbeat.install(beat)
    spec = {
        "input": clip.as_uri(),
        "outputs": [{"name": "main", "container": "ts", "video": {"preset": "ultrafast"}}],
    }
    job_id = queued_job(key, spec)
    tasks._run_job(job_id, None)
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.state, job.attempt, job.error) == ("succeeded", 1, None)
    assert beat.lease_ok()
