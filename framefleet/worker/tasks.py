"""The Celery task and the worker process's life around it.

Task: claim the job (compare-and-set queued → running, attempt + 1), run the pipeline under the attempt's
limits, record how it ended. The task never raises: every ending is written through the state machine
and the message is acknowledged afterwards (acks_late). A retryable failure leaves the job `retrying` with
a `retry_at` in the database; the beat re-queues it when due (no Celery countdown: such messages would sit
unacknowledged in worker memory, past the broker's visibility timeout).

Process life (Celery signals):
- main process, at start: prove capabilities with trial encodes (worker/trial.py), once per node;
- each pool process: start its heartbeat before taking any job, and leave SIGTERM to the main process;
- main process, on warm shutdown: tell every pool process to hand its job back after the grace period;
- main process, when a pool process exits: record it stopped, so the reaper need not wait for its TTL.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
import structlog
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutting_down

from framefleet.celery_app import RUN_JOB_TASK, app
from framefleet.config import Settings, get_settings
from framefleet.core.failures import FailureClass, JobFailure, classify_failure
from framefleet.core.states import JobState, TransitionError
from framefleet.core.timeouts import TimeLimits, run_limit
from framefleet.db.models import Job, JobOutput, Tenant, utcnow
from framefleet.db.outage import hold_through_outage
from framefleet.db.session import dispose_all, session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch, dispatch_many
from framefleet.jobs.service import cancel_key
from framefleet.lifecycle import ledger, retention
from framefleet.logging import configure_logging, get_logger
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.runner import AttemptLimits, FfmpegAborted, attempt_limits
from framefleet.observability import cost, energy, metrics, nvml, tracing
from framefleet.observability.usage import AttemptUsage, collecting
from framefleet.redis_client import get_redis, reset_clients
from framefleet.scheduling import chunks as chunk_rows
from framefleet.scheduling import control, fairshare, preemption, registry
from framefleet.scheduling.outcomes import fail_attempt
from framefleet.tenancy import quotas, usage
from framefleet.tenancy import service as tenancy_service
from framefleet.tenancy.access import SUSPENDED
from framefleet.worker import heartbeat, shutdown, trial
from framefleet.worker.pipeline import AttemptSplit, JobCanceled, Published, run_pipeline

log = get_logger("framefleet.worker")

HANDBACK = "worker shutting down"
LEASE_LOST = "heartbeat lease lost"
DECLINE_PAUSE_SECONDS = 1.0
_ATTEMPT_DIR = re.compile(r"^attempt-(\d+)$")

# Set in the main process before the pool processes are forked; they inherit both.
_node: str | None = None
_capabilities: dict[str, Any] = {}


# ---------------------------------------------------------------- process life


@worker_init.connect
def _prove_capabilities(sender: Any = None, **_: object) -> None:
    global _node, _capabilities
    settings = get_settings()
    _node = getattr(sender, "hostname", None)
    shutdown.clear()
    if settings.worker_metrics_port:
        # Before the pool processes fork: they inherit the multiprocess mode and write beside each other.
        metrics.enable_multiprocess(settings.data_dir / "metrics" / f"worker-{settings.worker_metrics_port}")
        metrics.serve_worker_metrics(
            settings.worker_metrics_port,
            settings.metrics_host,
            work_root=settings.work_root,
            pool=settings.pool,
        )
    _capabilities = trial.prove_capabilities(ffmpeg_path(), timeout=settings.capability_trial_timeout_seconds)
    log.info(
        "capabilities proven",
        pool=settings.pool,
        cpu_video=_capabilities["video"]["cpu"],
        gpu_video=_capabilities["video"]["gpu"],
        gpus=[d.get("name") for d in _capabilities["gpus"]["devices"]],
        seconds=_capabilities["proved_in_seconds"],
    )
    if settings.pool == "gpu" and not _capabilities["video"]["gpu"]:
        log.warning("this worker serves the gpu pool but no GPU encoder passed its trial")


@worker_process_init.connect
def _after_fork(sender: Any = None, **_: object) -> None:
    # Connections inherited from the parent process must not be shared with it.
    dispose_all()
    reset_clients()
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    node = str(sender) if sender else _node
    beat = heartbeat.Heartbeat(
        node=node or "worker", pool=settings.pool, capabilities=_capabilities, settings=settings
    )
    heartbeat.install(beat)
    beat.start()
    metrics.SLOTS.labels(settings.pool).set(1)
    metrics.BUSY.labels(settings.pool).set(0)
    # A SIGTERM sent to the whole process group (systemd, `framefleet up`) must not kill the job mid-encode:
    # the main process gets it too and starts the graceful shutdown that hands jobs back after the grace.
    # (Ignored, billiard leaves it so; media/runner.py restores the default for ffmpeg.)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@worker_shutting_down.connect
def _on_shutting_down(how: str = "Warm", **_: object) -> None:
    if how == "Warm":
        shutdown.request_drain(get_settings().shutdown_grace_seconds)


@worker_process_shutdown.connect
def _on_pool_process_exit(pid: int | None = None, exitcode: int | None = None, **_: object) -> None:
    # Runs in the main process. A pool process that died (OOM killer, crash) left its job `running`;
    # marking it stopped lets the reaper recover the job now instead of after the heartbeat TTL.
    if pid is not None:
        metrics.pool_process_exited(pid)
    if pid is not None and _node is not None:
        heartbeat.mark_stopped(heartbeat.worker_id_for(_node, pid))


def worker_identity() -> str:
    """This process's worker id (`<node>:<pid>`)."""
    beat = heartbeat.current()
    return beat.id if beat is not None else heartbeat.worker_id_for(None, os.getpid())


def _abort_reason() -> str | None:
    """Asked by every ffmpeg of an attempt on each poll: a reason to stop now, or None."""
    if shutdown.grace_over():
        return HANDBACK
    beat = heartbeat.current()
    if beat is not None and not beat.lease_ok():
        return LEASE_LOST
    return None


# ---------------------------------------------------------------- the task


@dataclass
class Ending:
    kind: str  # succeeded | canceled | failed | handback | lease | split (the chunks carry the job on)
    reason: str
    failure_class: FailureClass | None = None
    values: dict[str, Any] = field(default_factory=dict)
    published: Published | None = None


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, ignore_result=True)
def run_job(self: Any, job_id: str) -> None:
    """Run one job if this delivery can claim it."""
    # The publisher's context rides in the message headers (jobs/dispatch.py), which Celery exposes as
    # attributes of the request.
    parent = tracing.extract({tracing.TRACEPARENT: getattr(self.request, tracing.TRACEPARENT, None) or ""})
    with tracing.span(
        "job.run",
        kind=tracing.SpanKind.CONSUMER,
        parent=parent,
        attributes={"framefleet.job_id": job_id},
    ) as run_span:
        _run_job(job_id, run_span)


def _run_job(job_id: str, run_span: tracing.Span | None) -> None:
    settings = get_settings()
    worker = worker_identity()
    structlog.contextvars.clear_contextvars()
    if shutdown.draining():
        _pass_on(job_id, "worker is shutting down")
        return
    with tracing.span("job.claim", attributes={"framefleet.worker": worker}) as claim_span:
        # A claim during a database outage waits for it (its message stays unacknowledged meanwhile), rather
        # than failing the delivery and leaving the job to the reconciler.
        claimed = hold_through_outage(
            lambda: _claim_with_lease(job_id, worker, settings),
            what=f"the claim of job {job_id}",
            hold_seconds=settings.db_outage_hold_seconds,
        )
        if claim_span is not None:
            claim_span.set_attribute("framefleet.claimed", claimed is not None)
    if claimed is None:
        return
    job, attempt, tenant_name, running_quota = claimed
    structlog.contextvars.bind_contextvars(job_id=job_id, tenant=tenant_name, attempt=attempt, worker=worker)
    redis_client = get_redis()
    _quietly(
        lambda: state_machine.announce(
            redis_client, job, reason="picked up by worker", ttl_seconds=settings.events_ttl_seconds
        ),
        "state event not published",
    )
    log.info("job started", priority=job.priority, pool=job.pool)
    tenant_label = _tenant_label(settings)(tenant_name)
    metrics.JOBS_STARTED.labels(job.priority, job.pool, tenant_label).inc()
    if job.queued_at is not None and job.started_at is not None:
        wait = (job.started_at - job.queued_at).total_seconds()
        metrics.QUEUE_WAIT.labels(job.priority, job.pool).observe(max(0.0, wait))
    metrics.BUSY.labels(job.pool).set(1)
    beat = heartbeat.current()
    if beat is not None:
        beat.set_current(job_id, attempt, beat_now=False)  # the claim wrote the row
    _remove_stale_attempts(settings.work_root / job_id, attempt)
    limits = AttemptLimits(
        limit_for=functools.partial(_limit_for, settings=settings, override=job.max_run_seconds),
        stall_timeout=settings.stall_timeout_seconds or None,
        abort=_abort_reason,
    )
    consumed = AttemptUsage()
    before = energy.sample(settings.powercap_root)
    # Only a GPU worker reads its GPU's counter: a CPU worker has nothing of it to attribute.
    gpu_before = _gpu_reader().read() if settings.pool == "gpu" else None
    started = time.monotonic()
    try:
        with collecting(consumed):
            ending = _run_attempt(job, tenant_name, settings, redis_client, attempt, limits)
        wall = time.monotonic() - started
        if limits.limit_seconds is not None:
            ending.values["run_limit_seconds"] = round(limits.limit_seconds, 3)
        used = cost.attempt_usage(
            cpu_seconds=consumed.cpu_seconds,
            wall_seconds=wall,
            measured_joules=energy.measured_joules(
                before, energy.sample(settings.powercap_root), consumed.cpu_seconds
            ),
            rates=rates(settings),
            gpu_seconds=consumed.gpu_seconds,
            measured_gpu_joules=_gpu_joules(gpu_before, consumed, settings),
        )
        if ending.kind == "split":
            # The job's usage then sums this task's and every chunk's (worker/chunked.py).
            with session_scope() as session:
                chunk_rows.add_usage(session, job_id=job_id, used=used)
            log.info("job continues in chunks", reason=ending.reason)
            return
        ending.values["usage"] = cost.add_usage(job.usage, used)
        with tracing.span("job.record", attributes={"framefleet.ending": ending.kind}):
            outcome = _record(
                job_id, ending, worker=worker, attempt=attempt, settings=settings, release=running_quota
            )
        _count_ending(job, ending, outcome, tenant_label, wall, consumed, used)
        if run_span is not None:
            run_span.set_attributes(
                {
                    "framefleet.attempt": attempt,
                    "framefleet.outcome": outcome or "lost",
                    "framefleet.pool": job.pool,
                }
            )
            if ending.kind in ("failed", "lease"):
                tracing.mark_error(run_span, ending.reason)
    finally:
        # Only now: until its ending is recorded, the heartbeat must keep saying this job runs here, or
        # the reaper could take a finished job for an orphan.
        if beat is not None:
            beat.clear_current()
        metrics.BUSY.labels(job.pool).set(0)
    structlog.contextvars.clear_contextvars()


@functools.cache
def _tenant_labels(allow: tuple[str, ...], cap: int) -> metrics.TenantLabels:
    return metrics.TenantLabels(allow, cap)


def _tenant_label(settings: Settings) -> metrics.TenantLabels:
    """One bound per process (and per setting), so the cap counts every tenant this process labelled."""
    return _tenant_labels(tuple(settings.metrics_tenants), settings.metrics_max_tenants)


def _gpu_joules(before: nvml.GpuReading | None, consumed: AttemptUsage, settings: Settings) -> float | None:
    """The attempt's share of its GPU's energy, or None when it encoded on no GPU or NVML cannot tell."""
    if before is None or consumed.gpu_seconds <= 0:
        return None
    joules = nvml.gpu_joules(before, _gpu_reader().read())
    return None if joules is None else nvml.job_share(joules, slots=settings.worker_concurrency)


def rates(settings: Settings) -> cost.Rates:
    """The deployment's energy and machine-time prices."""
    return cost.Rates(
        currency=settings.cost_currency,
        price_per_kwh=settings.energy_price_per_kwh,
        cpu_hour_rate=settings.cpu_hour_rate,
        gpu_hour_rate=settings.gpu_hour_rate,
        watts_per_core=settings.watts_per_core,
        watts_per_gpu=settings.watts_per_gpu,
    )


@functools.cache
def _gpu_reader() -> nvml.Reader:
    """One NVML reader per pool process, for the device its NVENC encodes run on."""
    return nvml.Reader(visible=os.environ.get("CUDA_VISIBLE_DEVICES"))


def _count_ending(
    job: Job,
    ending: Ending,
    outcome: str | None,
    tenant: str,
    wall: float,
    consumed: AttemptUsage,
    used: dict[str, Any],
) -> None:
    """The attempt's series: how it ended (as recorded; `lost` when another owner took the job), what it
    moved and consumed, and how fast it encoded."""
    label = "lost" if outcome is None else "handback" if outcome == JobState.queued else outcome
    pool = job.pool
    metrics.JOBS_FINISHED.labels(job.priority, pool, tenant, label).inc()
    metrics.RUN_TIME.labels(job.priority, pool, label).observe(wall)
    if ending.failure_class is not None and ending.kind in ("failed", "lease"):
        metrics.JOB_FAILURES.labels(pool, ending.failure_class.value).inc()
        if label == JobState.retrying:
            metrics.JOB_RETRIES.labels(job.priority, pool).inc()
    metrics.BYTES_IN.labels(pool).inc(consumed.bytes_in)
    metrics.CPU_SECONDS.labels(pool, tenant).inc(used["cpu_seconds"])
    metrics.GPU_SECONDS.labels(pool, tenant).inc(used["gpu_seconds"])
    metrics.ENERGY.labels(pool, tenant, used["joules_source"]).inc(used["joules"])
    metrics.COST.labels(pool, tenant, used["cost"]["currency"]).inc(used["cost"]["amount"])
    if ending.published is None:
        return
    rows = ending.published.rows
    metrics.BYTES_OUT.labels(pool).inc(sum(row.size_bytes or 0 for row in rows))
    video = next((row for row in rows if row.video_codec), None)
    codec = (
        video.video_codec if video is not None else next((r.audio_codec for r in rows if r.audio_codec), None)
    )
    if consumed.ffmpeg_wall_seconds > 0 and codec:
        resolution = metrics.resolution_class(video.height if video is not None else None)
        if consumed.frames:
            metrics.ENCODE_FPS.labels(codec, resolution).observe(
                consumed.frames / consumed.ffmpeg_wall_seconds
            )
        if consumed.media_seconds:
            speed = consumed.media_seconds / consumed.ffmpeg_wall_seconds
            metrics.ENCODE_SPEED.labels(codec, resolution).observe(speed)


def _quietly(action: Any, what: str) -> None:
    """Redis side effects that must not turn a recorded ending into a task error when Redis is away."""
    try:
        action()
    except redis.RedisError as exc:
        log.warning(what, error=f"{type(exc).__name__}: {exc}")


def _limit_for(media_seconds: float | None, *, settings: Settings, override: int | None) -> float:
    limits = TimeLimits(
        settings.timeout_factor, settings.timeout_floor_seconds, float(settings.job_max_seconds)
    )
    return run_limit(media_seconds, limits, override)


def _run_attempt(
    job: Job, tenant: str, settings: Settings, redis_client: Any, attempt: int, limits: AttemptLimits
) -> Ending:
    try:
        with attempt_limits(limits):
            published = run_pipeline(
                job, tenant=tenant, settings=settings, redis_client=redis_client, attempt=attempt
            )
    except JobCanceled:
        preempted = _preempted(redis_client, job.id, attempt)
        if preempted is not None:
            # Handed back to its queue like a drained worker's job: not a failed attempt.
            return Ending("handback", preempted)
        return Ending("canceled", "canceled by client", FailureClass.canceled)
    except AttemptSplit as split:
        return Ending("split", str(split))
    except FfmpegAborted as aborted:
        if aborted.reason == HANDBACK:
            return Ending(
                "handback", f"handed back: {HANDBACK}, grace of {settings.shutdown_grace_seconds:g}s over"
            )
        return Ending("lease", f"stopped: {aborted.reason}", FailureClass.worker_lost)
    except JobFailure as failure:
        return Ending("failed", failure.message, failure.failure_class)
    except Exception as exc:  # the worker must survive anything a job does
        log.exception("job crashed")
        failure_class = classify_failure(None, "", exc)
        return Ending("failed", f"internal error: {type(exc).__name__}: {exc}"[:500], failure_class)
    reason = "all outputs published"
    if published.cached_from is not None:
        reason = f"result cache hit: outputs copied from job {published.cached_from}"
    return Ending(
        "succeeded", reason, values={"progress": 100.0, **published.job_values()}, published=published
    )


def _preempted(redis_client: Any, job_id: str, attempt: int) -> str | None:
    """The history reason when the stop was the beat's preemption of this attempt, else None (a cancel)."""
    try:
        return preemption.preempted_reason(redis_client.get(cancel_key(job_id)), attempt)
    except redis.RedisError:
        # Unreadable now (it was read a moment ago): hand the job back; the hand-back's ending still turns
        # it `canceled` when the database says a client asked for that.
        return "stopped (cancel or preemption); handed back"


def _claim_with_lease(job_id: str, worker: str, settings: Settings) -> tuple[Job, int, str, bool] | None:
    """The claim, by a worker whose lease is current.

    A worker whose lease lapsed (its host was cut off, or the database was away) and that just recorded its
    last ending may take the next message before its heartbeat's next beat: its own lease check would stop
    that encode at once, a failed attempt for nothing. It renews the lease first; the claim's transaction
    follows, so a database still away fails both and the caller waits.
    """
    beat = heartbeat.current()
    if beat is not None and not beat.lease_ok():
        beat.beat()
    return _claim(job_id, worker, settings)


def _claim(job_id: str, worker: str, settings: Settings) -> tuple[Job, int, str, bool] | None:
    """Compare-and-set queued → running for a new attempt; None when this delivery has nothing to do.

    The last item says whether the tenant has a max_running_jobs quota (its ending then releases a held job).
    """
    try:
        with session_scope() as session:
            current = session.get(Job, job_id)
            if current is None:
                log.warning("job not found; dropping message", job_id=job_id)
                return None
            tenant = session.get(Tenant, current.tenant_id)
            held = None
            held_reason = ""
            decline_reason = ""
            successors: list[Job] = []
            if tenant is not None and tenant.status == SUSPENDED and current.state == JobState.queued:
                # Held, not run: reactivating the tenant queues it again (tenancy/service.py).
                held = tenancy_service.hold_for_suspension(
                    session, job_id=job_id, tenant=tenant.name, worker=worker
                )
                held_reason = "tenant suspended"
                decline = False
            elif _should_decline(session, current, worker, settings):
                decline = True
                decline_reason = "this GPU worker failed it before and another one is available"
            elif current.state == JobState.queued and control.hold_of(session, node=_node_of(worker)):
                # Taken just before the node saw its cordon or drain: another worker runs it.
                decline = True
                decline_reason = "this worker is cordoned or draining"
            elif (held := _hold_for_quota(session, current, tenant, worker)) is not None:
                # Held, not run: a job of the tenant that stops running releases it (tenancy/quotas.py).
                held_reason = "tenant runs its max_running_jobs"
                decline = False
            else:
                decline = False
                attempt = current.attempt + 1
                job = state_machine.transition(
                    session,
                    job_id,
                    JobState.running,
                    reason="picked up by worker",
                    expect=[JobState.queued],
                    worker=worker,
                    attempt=current.attempt,
                    values={"attempt": attempt, "worker": worker, "started_at": utcnow(), "progress": 0.0},
                )
                # The job left its queue: its tenant's next job waiting for its fair share takes its place.
                if settings.fair_share_in_flight > 0:
                    successors = fairshare.release_next(session, job=job)
                # Advertised in the claim's own transaction: GET /v1/workers and the reaper see this
                # worker running the job from the commit that made it running.
                heartbeat.record_current(session, worker, job_id, attempt)
                tenant_name = tenant.name if tenant else str(job.tenant_id)
                running_quota = tenant is not None and (
                    quotas.settings_quotas(tenant.settings).max_running_jobs is not None
                )
    except TransitionError as exc:
        # Canceled while queued, or another delivery already owns it: this message has nothing to do.
        log.info("job not claimable; skipping", job_id=job_id, reason=exc.reason)
        return None
    if held is not None:
        log.info("job held pending", job_id=job_id, reason=held_reason)
        _quietly(
            lambda: state_machine.announce(
                get_redis(), held, reason=held_reason, ttl_seconds=settings.events_ttl_seconds
            ),
            "state event not published",
        )
        return None
    if successors:
        dispatch_many(successors)
    if decline:
        time.sleep(DECLINE_PAUSE_SECONDS)  # let another worker take it rather than bouncing at full speed
        _pass_on(job_id, decline_reason)
        return None
    return job, attempt, tenant_name, running_quota


def _node_of(worker: str) -> str:
    # A worker id is `<node>:<pid>` (heartbeat.worker_id_for); holds name the node.
    return worker.rpartition(":")[0] or worker


def _hold_for_quota(session: Any, job: Job, tenant: Tenant | None, worker: str) -> Job | None:
    """The job moved to `pending` when its tenant already runs its max_running_jobs; else None."""
    if tenant is None or job.state != JobState.queued:
        return None
    limits = quotas.settings_quotas(tenant.settings)
    return quotas.hold_if_full(session, job=job, tenant=tenant.name, quotas=limits, worker=worker)


def _should_decline(session: Any, job: Job, worker: str, settings: Settings) -> bool:
    """A GPU job this worker already failed for lack of hardware goes to another live GPU worker if any."""
    if job.state != JobState.queued or worker not in (job.avoid_workers or []):
        return False
    others = registry.live_gpu_workers_for(session, settings, job.spec)
    return any(w not in (job.avoid_workers or []) for w in others)


def _pass_on(job_id: str, why: str) -> None:
    """Leave the job queued and publish it again for another worker."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.queued:
            return
        log.info("passing job on", job_id=job_id, reason=why)
        dispatch(job)


def _remove_stale_attempts(job_dir: Path, attempt: int) -> None:
    """Work folders of this job's earlier attempts on this machine (a killed worker could not clean up)."""
    try:
        entries = list(job_dir.iterdir())
    except OSError:
        return
    for entry in entries:
        match = _ATTEMPT_DIR.match(entry.name)
        if match and int(match.group(1)) < attempt:
            shutil.rmtree(entry, ignore_errors=True)


# ---------------------------------------------------------------- endings


def _write_ending(
    job_id: str, ending: Ending, *, worker: str, attempt: int, settings: Settings
) -> tuple[Job, bool]:
    """The ending's transaction: (the job as left, whether it went back to its queue)."""
    redispatch = False
    with session_scope() as session:
        if ending.kind == "succeeded":
            job = _end(
                session,
                job_id,
                JobState.succeeded,
                ending.reason,
                worker,
                attempt,
                {"failure_class": None, "error": None, **ending.values},
            )
            # In the ending's transaction, after its compare-and-set: the rows appear together with
            # `succeeded` (never beside a running job), and an attempt that lost the job writes none.
            assert ending.published is not None
            session.execute(sa.delete(JobOutput).where(JobOutput.job_id == job_id))
            session.add_all(ending.published.rows)
            # Counted with the success itself: quotas and reports read the month's row, not the jobs.
            usage.record_success(
                session,
                tenant_id=job.tenant_id,
                outputs=ending.published.rows,
                at=job.finished_at or utcnow(),
            )
            # Stored bytes are counted here, and taken off again when retention deletes the objects.
            ledger.record_published(
                session, tenant_id=job.tenant_id, job_id=job_id, objects=ending.published.objects
            )
            retention.schedule(session, job=job)
        elif ending.kind == "canceled":
            job = _end(
                session,
                job_id,
                JobState.canceled,
                ending.reason,
                worker,
                attempt,
                {"failure_class": FailureClass.canceled.value, **ending.values},
                actor=_canceled_by(session, job_id),
            )
        elif ending.kind == "handback":
            job = _end(
                session,
                job_id,
                JobState.queued,
                ending.reason,
                worker,
                attempt,
                {"progress": 0.0, **ending.values},
            )
            if job.cancel_requested:
                job = _end(
                    session,
                    job_id,
                    JobState.canceled,
                    "canceled by client",
                    worker,
                    attempt,
                    {"failure_class": FailureClass.canceled.value},
                    actor=job.cancel_requested_by,
                )
            redispatch = job.state == JobState.queued
        else:
            assert ending.failure_class is not None
            job = fail_attempt(
                session,
                job_id,
                ending.failure_class,
                ending.reason,
                worker=worker,
                attempt=attempt,
                settings=settings,
                values=ending.values,
            )
    return job, redispatch


def _record(
    job_id: str, ending: Ending, *, worker: str, attempt: int, settings: Settings, release: bool = False
) -> str | None:
    """Write the attempt's ending through the state machine, unless the job was taken from this attempt.

    Returns the state the job was left in, or None when this attempt no longer owned it. `release`: the
    tenant has a max_running_jobs quota, so the freed slot may let a held job go.
    """
    try:
        # The encode is done: a database outage now holds its result until the ending can be written.
        job, redispatch = hold_through_outage(
            lambda: _write_ending(job_id, ending, worker=worker, attempt=attempt, settings=settings),
            what=f"the ending of job {job_id} ({ending.kind})",
            hold_seconds=settings.db_outage_hold_seconds,
        )
    except TransitionError as exc:
        log.warning("could not record job ending", ending=ending.kind, reason=exc.reason)
        return None
    if redispatch:
        dispatch(job)
    # One round trip: the outputs (after their rows are committed), the new state, and the cancel flag
    # cleared (this attempt is over, so a cancel request has nothing left to stop).
    _quietly(
        lambda: state_machine.announce(
            get_redis(),
            job,
            reason=ending.reason,
            ttl_seconds=settings.events_ttl_seconds,
            before=ending.published.events if ending.published is not None else None,
            delete=(cancel_key(job_id),),
        ),
        "state event not published",
    )
    log.info("job ended", state=job.state, failure_class=job.failure_class, reason=ending.reason)
    if release:
        # A running slot of the tenant came free: the oldest job held for it may go (the beat also sweeps).
        try:
            quotas.release_and_dispatch(tenant_id=job.tenant_id, settings=settings)
        except Exception as exc:  # the ending is recorded; the beat's sweep releases them instead
            log.warning("held jobs not released", error=f"{type(exc).__name__}: {exc}")
    return str(job.state)


def _end(
    session: Any,
    job_id: str,
    target: JobState,
    reason: str,
    worker: str,
    attempt: int,
    values: dict[str, Any],
    *,
    actor: str | None = None,
) -> Job:
    expect = [JobState.running] if target is not JobState.canceled else [JobState.running, JobState.queued]
    return state_machine.transition(
        session,
        job_id,
        target,
        reason=reason,
        expect=expect,
        worker=worker,
        attempt=attempt,
        values=values,
        actor=actor,
    )


def _canceled_by(session: Any, job_id: str) -> str | None:
    """Who asked to cancel the running job (recorded by the cancel request), for its history row."""
    actor: str | None = session.scalar(sa.select(Job.cancel_requested_by).where(Job.id == job_id))
    return actor
