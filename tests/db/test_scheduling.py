"""Scheduling against the real database and Redis: failed attempts, the reaper, retry promotion, the
reconciler, aging, the beat's leader lock, GPU fallback, and the schema behind them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from framefleet.config import Settings, get_settings
from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, JobChunk, Worker, utcnow
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.service import history_of
from framefleet.media.chunks import Chunk
from framefleet.redis_client import get_redis
from framefleet.scheduling import broker, chunks, preemption
from framefleet.scheduling.maintenance import (
    LEADER_KEY,
    LeaderLock,
    age_waiting_jobs,
    promote_due_retries,
    reap_dead_workers,
    reconcile_broker,
)
from framefleet.scheduling.outcomes import fail_attempt
from framefleet.worker import tasks
from framefleet.worker.heartbeat import worker_key
from tests.factories import queued_job
from tests.isolated import private_database, settings_env

CPU_CAPS = {
    "video": {"cpu": ["av1", "h264", "hevc", "vp9"], "gpu": []},
    "audio": ["aac", "mp3", "opus"],
    "filters": ["libvmaf"],
}
GPU_CAPS = {
    "video": {"cpu": ["h264"], "gpu": ["h264", "hevc"]},
    "audio": ["aac", "opus"],
    "filters": ["libvmaf"],
}


def settings(**overrides: Any) -> Settings:
    base = get_settings().model_dump()
    base.update(
        {
            "retry_base_seconds": 5.0,
            "retry_cap_seconds": 60.0,
            "retry_max_attempts": 3,
            "retry_overrides": {},
            "heartbeat_interval_seconds": 1.0,
            "heartbeat_ttl_seconds": 5.0,
            "reconcile_grace_seconds": 10.0,
            "aging_seconds": 60.0,
            "aging_max_priority": "high",
        }
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="module", autouse=True)
def private(
    test_env: dict[str, str], database_url: str, redis_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """A database and Redis keyspace of its own: the beat's tasks act on every job they find."""
    url = private_database(database_url, tmp_path_factory.mktemp("scheduling"))
    with settings_env({"FRAMEFLEET_DATABASE_URL": url, "FRAMEFLEET_REDIS_URL": redis_server.url[:-1] + "1"}):
        get_redis().flushdb()
        yield


@pytest.fixture()
def made() -> Iterator[dict[str, list[str]]]:
    """What a test creates (jobs, worker rows), removed from the queues and the registry afterwards."""
    created: dict[str, list[str]] = {"jobs": [], "workers": []}
    yield created
    client = get_redis()
    snap = broker.snapshot(client, delivered_within=0)
    for job_id in created["jobs"]:
        for key, raw in snap.waiting.get(job_id, []):
            broker.remove(client, key, raw)
    with session_scope() as session:
        session.execute(
            sa.update(Job)
            .where(Job.id.in_(created["jobs"]), Job.state.not_in(["succeeded", "failed", "canceled"]))
            .values(state="canceled")
        )
        session.execute(sa.delete(Worker).where(Worker.id.in_(created["workers"])))
    for worker_id in created["workers"]:
        client.delete(worker_key(worker_id))


def new_job(key: str, made: dict[str, list[str]], **spec: Any) -> str:
    document = {"input": "file:///x.mp4", "outputs": [{"container": "mkv"}], "hardware": "gpu", **spec}
    job_id = queued_job(key, document, pool=document["hardware"] if document["hardware"] != "auto" else "cpu")
    made["jobs"].append(job_id)
    return job_id


def fail(
    job_id: str, failure_class: FailureClass, message: str, *, worker: str, attempt: int, settings: Settings
) -> None:
    """End the attempt with a failure, as the worker does."""
    with session_scope() as session:
        fail_attempt(
            session, job_id, failure_class, message, worker=worker, attempt=attempt, settings=settings
        )


def start(job_id: str, worker: str) -> int:
    with session_scope() as session:
        current = session.get(Job, job_id)
        assert current is not None
        attempt = current.attempt + 1
        state_machine.transition(
            session,
            job_id,
            JobState.running,
            reason="claim",
            expect=[JobState.queued],
            worker=worker,
            values={"attempt": attempt, "worker": worker, "started_at": utcnow()},
        )
    return attempt


def add_worker(
    made: dict[str, list[str]],
    *,
    pool: str = "cpu",
    age: float = 0.0,
    stopped: bool = False,
    current_job: str | None = None,
    attempt: int | None = None,
    caps: dict[str, Any] | None = None,
    node: str | None = None,
) -> str:
    worker_id = f"{node or pool + '@' + uuid.uuid4().hex[:6]}:{len(made['workers']) + 100}"
    now = utcnow()
    with session_scope() as session:
        session.add(
            Worker(
                id=worker_id,
                node=worker_id.rsplit(":", 1)[0],
                host="test",
                pid=1,
                pool=pool,
                capabilities=caps or (GPU_CAPS if pool == "gpu" else CPU_CAPS),
                started_at=now - timedelta(seconds=age + 60),
                last_heartbeat=now - timedelta(seconds=age),
                stopped_at=now if stopped else None,
                current_job=current_job,
                current_attempt=attempt,
            )
        )
    made["workers"].append(worker_id)
    return worker_id


def job(job_id: str) -> Job:
    with session_scope() as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


# ---------------------------------------------------------------- failed attempts


def test_submission_records_when_the_job_was_queued(tenant_key: tuple[str, str], made: Any) -> None:
    job_id = new_job(tenant_key[1], made, priority="low")
    row = job(job_id)
    assert row.queued_at is not None and row.effective_priority == "low" and row.failures == 0


def test_retryable_failure_waits_in_retrying_then_fails_at_max_attempts(
    tenant_key: tuple[str, str], made: Any
) -> None:
    job_id = new_job(tenant_key[1], made)
    s = settings(retry_max_attempts=2)
    attempt = start(job_id, "w1")
    before = utcnow()
    fail(job_id, FailureClass.storage_unavailable, "store down", worker="w1", attempt=attempt, settings=s)
    row = job(job_id)
    assert row.state == "retrying" and row.failures == 1 and row.failure_class == "storage_unavailable"
    assert row.retry_at is not None and before <= row.retry_at <= utcnow() + timedelta(seconds=5)
    # The late original attempt cannot record anything once the job moved on.
    with session_scope() as session, pytest.raises(TransitionError):
        state_machine.transition(session, job_id, JobState.succeeded, reason="late", attempt=attempt)
    with session_scope() as session:
        state_machine.transition(
            session, job_id, JobState.queued, reason="retry due", expect=[JobState.retrying]
        )
    attempt = start(job_id, "w2")
    assert attempt == 2
    fail(job_id, FailureClass.storage_unavailable, "store down", worker="w2", attempt=attempt, settings=s)
    row = job(job_id)
    assert row.state == "failed" and row.failures == 2 and "max 2" in (history_of_reason(job_id))


def history_of_reason(job_id: str) -> str:
    with session_scope() as session:
        return history_of(session, job_id)[-1].reason


def test_non_retryable_failure_fails_at_once_and_cancel_wins(tenant_key: tuple[str, str], made: Any) -> None:
    job_id = new_job(tenant_key[1], made)
    attempt = start(job_id, "w1")
    fail(
        job_id, FailureClass.timeout, "ran past its limit", worker="w1", attempt=attempt, settings=settings()
    )
    assert job(job_id).state == "failed"
    other = new_job(tenant_key[1], made)
    attempt = start(other, "w1")
    with session_scope() as session:
        session.execute(sa.update(Job).where(Job.id == other).values(cancel_requested=True))
    fail(other, FailureClass.worker_lost, "lost", worker="w1", attempt=attempt, settings=settings())
    assert job(other).state == "canceled" and job(other).failure_class == "canceled"


def test_gpu_failure_goes_to_another_gpu_worker_then_falls_back_to_cpu(
    tenant_key: tuple[str, str], made: Any
) -> None:
    s = settings(retry_base_seconds=0.0)
    g1 = add_worker(made, pool="gpu", node="gpu@one")
    g2 = add_worker(made, pool="gpu", node="gpu@two")
    add_worker(made, pool="cpu")
    job_id = new_job(tenant_key[1], made, fallback="cpu")
    attempt = start(job_id, g1)
    fail(
        job_id,
        FailureClass.hardware_unavailable,
        "Cannot load libcuda.so.1",
        worker=g1,
        attempt=attempt,
        settings=s,
    )
    row = job(job_id)
    assert (row.state, row.pool, row.avoid_workers) == ("retrying", "gpu", [g1])
    assert "another GPU worker" in history_of_reason(job_id)

    # The worker that failed it declines it while another GPU worker is alive.
    from framefleet.worker.tasks import _should_decline

    with session_scope() as session:
        state_machine.transition(
            session, job_id, JobState.queued, reason="retry due", expect=[JobState.retrying]
        )
    with session_scope() as session:
        queued = session.get(Job, job_id)
        assert queued is not None
        assert _should_decline(session, queued, g1, s) and not _should_decline(session, queued, g2, s)

    attempt = start(job_id, g2)
    fail(
        job_id,
        FailureClass.hardware_unavailable,
        "Cannot load libcuda.so.1",
        worker=g2,
        attempt=attempt,
        settings=s,
    )
    row = job(job_id)
    assert (row.state, row.pool) == ("retrying", "cpu"), "no GPU left: the spec allows CPU"
    assert sorted(row.avoid_workers or []) == sorted([g1, g2])
    assert "falling back to CPU" in history_of_reason(job_id)


def test_gpu_failure_without_fallback_stays_on_gpu(tenant_key: tuple[str, str], made: Any) -> None:
    g1 = add_worker(made, pool="gpu")
    add_worker(made, pool="cpu")
    job_id = new_job(tenant_key[1], made)
    attempt = start(job_id, g1)
    fail(
        job_id,
        FailureClass.hardware_unavailable,
        "no device",
        worker=g1,
        attempt=attempt,
        settings=settings(),
    )
    row = job(job_id)
    assert (row.state, row.pool) == ("retrying", "gpu")


# ---------------------------------------------------------------- reaper


def test_reaper_takes_back_jobs_of_dead_workers_only(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings()
    now = utcnow()
    dead = add_worker(made, age=30)
    stopped = add_worker(made, stopped=True)
    alive = add_worker(made)
    redis_only = add_worker(made, age=30)  # database row stale but Redis key present: not both agree
    get_redis().set(worker_key(redis_only), "{}", ex=30)
    jobs = {name: new_job(tenant_key[1], made) for name in ("dead", "stopped", "alive", "redis_only")}
    attempts = {
        name: start(jobs[name], wid)
        for name, wid in (("dead", dead), ("stopped", stopped), ("alive", alive), ("redis_only", redis_only))
    }
    with session_scope() as session:
        session.execute(
            sa.update(Worker)
            .where(Worker.id == alive)
            .values(current_job=jobs["alive"], current_attempt=attempts["alive"])
        )
    recovered = reap_dead_workers(s, now=now)
    assert jobs["dead"] in recovered and jobs["stopped"] in recovered
    assert jobs["alive"] not in recovered and jobs["redis_only"] not in recovered
    row = job(jobs["dead"])
    assert row.state == "retrying" and row.failure_class == "worker_lost" and row.failures == 1
    assert "lost: no heartbeat for 30s" in (row.error or "")
    assert "its process exited" in (job(jobs["stopped"]).error or "")
    # The original attempt, were it still alive somewhere, can neither finish nor publish.
    with pytest.raises(JobFailure) as caught:
        state_machine.ensure_owner(jobs["dead"], attempts["dead"])
    assert caught.value.failure_class is FailureClass.worker_lost


def test_reaper_recovers_a_job_its_live_worker_no_longer_runs(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings()
    worker = add_worker(made)
    job_id = new_job(tenant_key[1], made)
    start(job_id, worker)
    with session_scope() as session:
        session.execute(
            sa.update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=10))
        )
    # The worker's heartbeats say it is idle although the job says it runs there.
    assert job_id in reap_dead_workers(s)


def test_the_claim_advertises_the_job_on_the_worker_row_without_a_beat(
    tenant_key: tuple[str, str], made: Any
) -> None:
    # The worker's claim (no heartbeat thread here): the row says the job runs there from the commit that
    # made it running, so neither GET /v1/workers nor the reaper depends on a beat coming soon after.
    worker = add_worker(made)
    job_id = new_job(tenant_key[1], made, hardware="cpu")
    claimed = tasks._claim(job_id, worker, settings())
    assert claimed is not None and claimed[1] == 1
    with session_scope() as session:
        row = session.get(Worker, worker)
        assert row is not None and (row.current_job, row.current_attempt) == (job_id, 1)
    assert job(job_id).state == "running"
    # A second delivery of the same message claims nothing and leaves the row as it is.
    assert tasks._claim(job_id, "cpu@other:1", settings()) is None
    with session_scope() as session:
        assert session.get(Worker, worker).current_job == job_id  # type: ignore[union-attr]


def test_reaper_cancels_a_job_canceled_while_its_worker_died(tenant_key: tuple[str, str], made: Any) -> None:
    dead = add_worker(made, age=60)
    job_id = new_job(tenant_key[1], made)
    start(job_id, dead)
    with session_scope() as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(cancel_requested=True))
    reap_dead_workers(settings())
    assert job(job_id).state == "canceled"


# ---------------------------------------------------------------- retries, reconciler, aging


def test_due_retries_are_queued_and_published(tenant_key: tuple[str, str], made: Any) -> None:
    due, later, canceled = (new_job(tenant_key[1], made) for _ in range(3))
    for job_id, delay in ((due, -1), (later, 3600), (canceled, -1)):
        attempt = start(job_id, "w1")
        with session_scope() as session:
            state_machine.transition(
                session,
                job_id,
                JobState.retrying,
                reason="x",
                attempt=attempt,
                values={"retry_at": utcnow() + timedelta(seconds=delay)},
            )
    with session_scope() as session:
        state_machine.transition(session, canceled, JobState.canceled, reason="client")
    promoted = promote_due_retries(settings())
    assert due in promoted and later not in promoted and canceled not in promoted
    assert job(due).state == "queued" and job(due).retry_at is None
    assert job(later).state == "retrying"
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert [key for key, _ in snap.waiting[due]] == ["gpu.normal"]


def test_reconciler_republishes_only_what_the_broker_lost(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings(reconcile_grace_seconds=5)
    lost, present, young = (new_job(tenant_key[1], made) for _ in range(3))
    with session_scope() as session:
        session.execute(
            sa.update(Job)
            .where(Job.id.in_([lost, present]))
            .values(queued_at=utcnow() - timedelta(seconds=60))
        )
    from framefleet.jobs.dispatch import dispatch

    dispatch(job(present))
    republished = reconcile_broker(s)
    assert lost in republished and present not in republished and young not in republished
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert len(snap.waiting[lost]) == 1 and len(snap.waiting[present]) == 1
    # The next pass finds every job in the broker (the lost one now waits there): nothing is published again.
    assert reconcile_broker(s) == [], "republished once, not every pass"
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert len(snap.waiting[lost]) == 1 and len(snap.waiting[present]) == 1


def test_aging_moves_a_waiting_job_up_and_takes_its_old_message_out(
    tenant_key: tuple[str, str], made: Any
) -> None:
    s = settings(aging_seconds=60, aging_max_priority="high")
    old = new_job(tenant_key[1], made, priority="batch")
    fresh = new_job(tenant_key[1], made, priority="batch")
    from framefleet.jobs.dispatch import dispatch

    for job_id in (old, fresh):
        dispatch(job(job_id))
    with session_scope() as session:
        session.execute(
            sa.update(Job).where(Job.id == old).values(queued_at=utcnow() - timedelta(seconds=130))
        )
    assert age_waiting_jobs(s) == [old]  # the database is private: nothing else is waiting
    row = job(old)
    assert (row.priority, row.effective_priority) == ("batch", "normal")
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert [key for key, _ in snap.waiting[old]] == ["gpu.normal"]
    assert [key for key, _ in snap.waiting[fresh]] == ["gpu.batch"]
    assert age_waiting_jobs(s) == [], "a job is aged once per step"


def test_one_beat_leads_at_a_time() -> None:
    client = get_redis()
    client.delete(LEADER_KEY)
    first = LeaderLock(get_redis, ttl_seconds=0.5, identity="beat-a")
    second = LeaderLock(get_redis, ttl_seconds=0.5, identity="beat-b")
    assert first.lead() and not second.lead()
    assert first.lead(), "the leader renews"
    first.release()
    assert second.lead() and not first.lead()
    client.delete(LEADER_KEY)  # as after a Redis flush: whoever asks next leads
    assert first.lead() and not second.lead()
    first.release()


def test_the_schema_matches_the_models() -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from framefleet.db.models import Base
    from framefleet.db.session import engine_for

    with engine_for(get_settings().database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


# ---------------------------------------------------------------- split-and-stitch


def split_job(key: str, made: dict[str, list[str]], worker: str, count: int = 3) -> tuple[str, int]:
    """A running job whose attempt was split into `count` queued chunks (as worker/pipeline.py does)."""
    job_id = new_job(key, made, hardware="cpu")
    attempt = start(job_id, worker)
    cuts = [Chunk(i, i * 25, 25, i * 1.0, 1.0) for i in range(count)]
    with session_scope() as session:
        chunks.start(session, job_id=job_id, job_attempt=attempt, chunks=cuts)
    return job_id, attempt


def chunk_rows(job_id: str) -> list[tuple[int, str, int]]:
    with session_scope() as session:
        rows = session.execute(
            sa.select(JobChunk.index, JobChunk.state, JobChunk.attempt)
            .where(JobChunk.job_id == job_id)
            .order_by(JobChunk.index)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_the_last_chunk_to_finish_queues_the_join_exactly_once(
    tenant_key: tuple[str, str], made: Any
) -> None:
    job_id, attempt = split_job(tenant_key[1], made, "w1")
    deliveries = []
    for index in range(3):
        with session_scope() as session:
            delivery = chunks.claim(session, job_id=job_id, job_attempt=attempt, index=index, worker="w1")
        assert delivery is not None and delivery.attempt == 1
        deliveries.append(delivery)
    with session_scope() as session:  # a second delivery of a running chunk's message claims nothing
        assert chunks.claim(session, job_id=job_id, job_attempt=attempt, index=0, worker="w2") is None
    finished = []
    for delivery in deliveries:
        with session_scope() as session:
            finished.append(chunks.finish(session, delivery=delivery, details={}))
    assert finished == [False, False, True]
    with session_scope() as session:  # finishing again (a late duplicate) counts nothing
        assert chunks.finish(session, delivery=deliveries[0], details={}) is False
    assert chunk_rows(job_id) == [(0, "done", 1), (1, "done", 1), (2, "done", 1), (3, "queued", 0)]


def test_reaper_puts_a_lost_chunk_back_alone(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings()
    parent = add_worker(made)  # alive and idle: the job's own task returned after splitting
    dead, alive = add_worker(made, age=30), add_worker(made)
    job_id, attempt = split_job(tenant_key[1], made, parent)
    with session_scope() as session:
        session.execute(
            sa.update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=10))
        )
        chunks.claim(session, job_id=job_id, job_attempt=attempt, index=0, worker=dead)
        chunks.claim(session, job_id=job_id, job_attempt=attempt, index=1, worker=alive)
        session.execute(
            sa.update(Worker).where(Worker.id == alive).values(current_job=job_id, current_attempt=attempt)
        )
    assert reap_dead_workers(s) == [job_id]
    row = job(job_id)
    assert (row.state, row.attempt, row.failures) == ("running", attempt, 0)  # the job itself untouched
    assert chunk_rows(job_id)[:3] == [(0, "queued", 1), (1, "running", 1), (2, "queued", 0)]
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert [key for key, _ in snap.waiting[job_id]] == ["cpu.normal"]  # the lost chunk, published again
    assert reap_dead_workers(s) == []


def test_reconciler_republishes_queued_chunks_the_broker_lost(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings(reconcile_grace_seconds=5)
    job_id, _ = split_job(tenant_key[1], made, "w1", count=2)
    with session_scope() as session:
        session.execute(
            sa.update(JobChunk)
            .where(JobChunk.job_id == job_id)
            .values(updated_at=utcnow() - timedelta(seconds=60))
        )
    assert job_id in reconcile_broker(s)
    snap = broker.snapshot(get_redis(), delivered_within=0)
    assert len(snap.waiting[job_id]) == 2  # both chunks; the waiting join is not due
    assert job_id not in reconcile_broker(s), "republished once, not every pass"


def test_idle_slots_count_live_idle_pool_processes_but_the_asker(made: Any) -> None:
    from framefleet.scheduling.registry import idle_slots

    with session_scope() as session:  # the module's earlier tests left workers behind: start from none
        session.execute(sa.update(Worker).values(stopped_at=utcnow()))
    me = add_worker(made)
    add_worker(made)  # idle
    add_worker(made, current_job="some-job", attempt=1)  # busy
    add_worker(made, age=30)  # heartbeat lapsed
    add_worker(made, stopped=True)
    add_worker(made, pool="gpu")  # another pool
    with session_scope() as session:
        assert idle_slots(session, settings(), pool="cpu", exclude=me) == 1
        assert idle_slots(session, settings(), pool="cpu") == 2


def test_preemption_never_stops_a_split_attempt(tenant_key: tuple[str, str], made: Any) -> None:
    s = settings(preempt_pools=["cpu"], preempt_after_seconds=0.0)
    split_worker, plain_worker = add_worker(made), add_worker(made)
    split_id, split_attempt = split_job(tenant_key[1], made, split_worker)
    plain_id = new_job(tenant_key[1], made, hardware="cpu", priority="normal")
    plain_attempt = start(plain_id, plain_worker)
    live = new_job(tenant_key[1], made, hardware="cpu", priority="live")
    with session_scope() as session:
        for worker_id, job_id, attempt in (
            (split_worker, split_id, split_attempt),
            (plain_worker, plain_id, plain_attempt),
        ):
            session.execute(
                sa.update(Worker)
                .where(Worker.id == worker_id)
                .values(current_job=job_id, current_attempt=attempt)
            )
        # The split job started later, so it would be the victim among equals if it could be one.
        session.execute(
            sa.update(Job).where(Job.id == split_id).values(priority="normal", started_at=utcnow())
        )
        session.execute(
            sa.update(Job).where(Job.id == live).values(queued_at=utcnow() - timedelta(seconds=5))
        )
    assert preemption.preempt(s) == [plain_id]


def test_the_reaper_failing_a_lost_attempt_removes_its_staged_chunks(
    tenant_key: tuple[str, str], made: Any
) -> None:
    from framefleet.lifecycle.staging import staging_base

    s = settings()
    dead, alive = add_worker(made, age=30), add_worker(made)
    job_id, attempt = split_job(tenant_key[1], made, add_worker(made))
    base = staging_base(s, tenant_key[0], job_id, attempt)
    staged = [f"{base}/main.1.mp4", f"{base}/main.1.scores.json"]
    with session_scope() as session:
        session.execute(
            sa.update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=10))
        )
        # Chunk 0 was lost twice already: this third loss fails the attempt.
        session.execute(
            sa.update(JobChunk)
            .where(JobChunk.job_id == job_id, JobChunk.index == 0)
            .values(attempt=chunks.MAX_CHUNK_DELIVERIES - 1)
        )
        chunks.claim(session, job_id=job_id, job_attempt=attempt, index=0, worker=dead)
        done = chunks.claim(session, job_id=job_id, job_attempt=attempt, index=1, worker=alive)
        assert done is not None and chunks.stage(session, delivery=done, uris=staged)
    for uri in staged:  # chunk 1 staged its files (the storage side of the recorded places)
        path = Path(uri.removeprefix("file://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"chunk")
    folder = Path(base.removeprefix("file://")).parent
    assert folder.name == ".chunks" and len(list(folder.rglob("*"))) == 3
    assert reap_dead_workers(s) == [job_id]
    assert job(job_id).state in ("retrying", "failed")
    assert not folder.exists()
    with session_scope() as session:  # the attempt is over: a chunk still running may stage nothing
        assert not chunks.stage(session, delivery=done, uris=staged)
