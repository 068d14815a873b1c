"""One attempt at a job: fetch → probe → one ffmpeg for everything, scored in-process → package → publish.

Every deliverable (plain outputs, HLS/DASH/CMAF groups, thumbnails, sprites, poster) and every quality
score comes from one ffmpeg process writing into the attempt's private work directory. Files are
published only once all of them are ready, each with an atomic put, manifests and WebVTT maps last so a
reader never sees one pointing at a missing file. If anything fails or the job is canceled, whatever
this attempt had put is removed again, manifests first. The attempt returns the output rows and their
events; the task records them in the same transaction as the job's ending (tasks.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import redis
import sqlalchemy as sa

from framefleet import events
from framefleet.config import Settings
from framefleet.core.failures import FailureClass, JobFailure, classify_ffmpeg_failure
from framefleet.core.spec import Fallback, Hardware, JobSpec
from framefleet.db.models import Job, JobOutput
from framefleet.db.session import session_scope
from framefleet.jobs.service import cancel_key, output_view
from framefleet.jobs.state_machine import ensure_owner
from framefleet.logging import get_logger
from framefleet.media.capabilities import Capabilities, detect_capabilities, detect_devices, hardware_for
from framefleet.media.command import JobPlan, plan_job
from framefleet.media.encoders import HardwareSetup
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.filters import Assets
from framefleet.media.loudness import build_loudness_scan, parse_loudnorm
from framefleet.media.probe import MediaInfo, probe
from framefleet.media.progress import Progress
from framefleet.media.results import Results, Row, collect_results
from framefleet.media.runner import FfmpegResult, run_ffmpeg
from framefleet.observability import tracing
from framefleet.observability import usage as attempt_usage
from framefleet.storage import backend_within
from framefleet.storage.base import StorageError
from framefleet.storage.namespace import Namespace, job_output_base, namespace_for

log = get_logger("framefleet.worker")

PROGRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Progress))
# Share of the progress bar taken by the measuring pass when loudness is normalised.
LOUDNESS_SHARE = 0.1


class JobCanceled(Exception):
    """The client canceled the job while this attempt ran."""


class ProgressReporter:
    """Throttles progress: to the event stream and to the DB, each at most once per its interval."""

    def __init__(self, job_id: str, attempt: int, redis_client: redis.Redis, settings: Settings) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.redis = redis_client
        self.event_interval = settings.progress_event_interval
        self.db_interval = settings.progress_db_interval
        self._last_event = 0.0
        # The claim already wrote progress 0; the first database write can wait a whole interval.
        self._last_db = time.monotonic()

    def report(self, percent: float, sample: Progress | None, phase: str, *, force: bool = False) -> None:
        """Publish progress, throttled (to the event stream always when `force`).

        `force` (the encode's last sample) does not write the database: the ending's transaction writes
        the final progress a moment later, and for a short job that write was a transaction of its own.
        """
        now = time.monotonic()
        if force or now - self._last_event >= self.event_interval:
            self._last_event = now
            data: dict[str, Any] = sample.to_dict() if sample else dict.fromkeys(PROGRESS_FIELDS)
            data.update(percent=round(percent, 2), phase=phase)
            events.publish(self.redis, self.job_id, "progress", data)
        if now - self._last_db >= self.db_interval:
            self._last_db = now
            with session_scope() as session:
                session.execute(
                    sa.update(Job)
                    .where(Job.id == self.job_id, Job.attempt == self.attempt, Job.state == "running")
                    .values(progress=round(percent, 2))
                )


class _Attempt:
    """The pieces every step of one attempt needs."""

    def __init__(
        self, job: Job, settings: Settings, redis_client: redis.Redis, attempt: int, namespace: Namespace
    ) -> None:
        self.job = job
        self.settings = settings
        self.namespace = namespace
        self.redis = redis_client
        self.attempt = attempt
        self.reporter = ProgressReporter(job.id, attempt, redis_client, settings)

    def canceled(self) -> bool:
        """True once the client asked to cancel."""
        return bool(self.redis.exists(cancel_key(self.job.id)))

    def check_canceled(self) -> None:
        """Raise JobCanceled once the client asked to cancel."""
        if self.canceled():
            raise JobCanceled()

    def run(
        self,
        argv: list[str],
        duration: float | None,
        on_progress: Callable[[Progress], None],
        *,
        phase: str,
        gpu: bool = False,
    ) -> FfmpegResult:
        """Run one ffmpeg with this attempt's cancel check and time limit, in an `ffmpeg.<phase>` span.
        `gpu`: it encodes on the GPU, so its wall time counts as the attempt's GPU-seconds."""
        attributes = {"framefleet.phase": phase, "media.duration_seconds": duration or 0.0}
        with tracing.span(f"ffmpeg.{phase}", attributes=attributes) as span:
            if span is not None:
                on_progress = _traced_progress(span, on_progress)
            started = time.monotonic()
            result = run_ffmpeg(
                argv,
                on_progress=on_progress,
                duration=duration,
                should_cancel=self.canceled,
                poll_interval=self.settings.cancel_poll_interval,
                timeout=self.settings.job_max_seconds,
            )
            if gpu and (usage := attempt_usage.current()) is not None:
                usage.gpu_seconds += time.monotonic() - started
            if span is not None:
                span.set_attribute("process.exit.code", result.returncode)
                if result.canceled or result.timed_out or result.returncode != 0:
                    why = "canceled" if result.canceled else "timed out" if result.timed_out else "failed"
                    tracing.mark_error(span, f"ffmpeg {why}")
            return result


def _traced_progress(span: tracing.Span, report: Callable[[Progress], None]) -> Callable[[Progress], None]:
    """Marks on the ffmpeg span when its first progress report came and when it said it was done: the
    start-up (probing, filter graph set-up) and the tail (muxing, scoring) show as the gaps around them."""
    first = True

    def on_progress(sample: Progress) -> None:
        nonlocal first
        if first:
            first = False
            span.add_event("progress.first", {"out_time_seconds": sample.out_time or 0.0})
        if sample.done:
            span.add_event("progress.end", {"frames": sample.frame or 0})
        report(sample)

    return on_progress


@dataclasses.dataclass
class Published:
    """What a successful attempt put in place: the output rows to record and the events that announce them."""

    rows: list[JobOutput]
    events: list[tuple[str, dict[str, Any]]]


def run_pipeline(
    job: Job, *, tenant: str, settings: Settings, redis_client: redis.Redis, attempt: int
) -> Published:
    """Run one attempt of `tenant`'s `job`; raise JobFailure or JobCanceled when it does not succeed.

    Every URI is checked against the tenant's namespace again here, whatever the API checked: the spec
    may predate the check, and only here are symlinks resolved.
    """
    spec = JobSpec.model_validate(job.spec)
    try:
        namespace = namespace_for(settings, tenant)
    except ValueError as exc:
        raise JobFailure(FailureClass.storage_denied, f"tenant {tenant!r} has no storage: {exc}") from None
    workdir = settings.work_root / job.id / f"attempt-{attempt}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run = _Attempt(job, settings, redis_client, attempt, namespace)
    try:
        with tracing.span("job.fetch", attributes={"url.scheme": spec.input_uri().split(":")[0]}):
            source = _fetch(spec.input_uri(), workdir / "input", namespace)
        if (usage := attempt_usage.current()) is not None:
            usage.bytes_in += source.stat().st_size
        run.check_canceled()
        with tracing.span("job.probe"):
            info = probe(source)
        log.info("input probed", duration=info.duration, video=bool(info.video), audio=bool(info.audio))
        ffmpeg = ffmpeg_path()
        caps = detect_capabilities(ffmpeg)
        assets = _assets(spec, info, source, workdir, run)
        hardware = _hardware(spec, settings, caps)
        plan = plan_job(
            spec,
            info,
            caps,
            source,
            workdir / "out",
            threads=settings.ffmpeg_threads,
            hardware=hardware,
            assets=assets,
        )
        _encode(
            plan,
            ffmpeg,
            run,
            start=LOUDNESS_SHARE * 100 if assets.loudness is not None else 0.0,
            gpu=hardware is not None,
        )
        run.check_canceled()
        with tracing.span("job.package"):
            results = collect_results(plan, spec, job_output_base(settings, tenant, job.id))
        _note_plan(plan)
        run.check_canceled()
        # A superseded attempt (its worker was presumed dead) must not publish beside its replacement.
        ensure_owner(job.id, attempt)
        with tracing.span("job.publish_outputs", attributes={"framefleet.outputs": len(results.rows)}):
            return _publish(job.id, results, namespace)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_empty_parent(workdir.parent)


def _fetch(uri: str, into: Path, namespace: Namespace, *, name: str | None = None) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        return backend_within(uri, namespace, write=False).fetch(uri, into, name=name)
    except StorageError as exc:
        raise JobFailure(exc.failure_class, f"input {uri}: {exc}") from exc


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            return int(frame.width), int(frame.height)
    except (av.FFmpegError, IndexError, StopIteration, OSError) as exc:
        raise JobFailure(
            FailureClass.input_invalid, f"the watermark is not a readable image: {exc}"
        ) from None


def _assets(spec: JobSpec, info: MediaInfo, source: Path, workdir: Path, run: _Attempt) -> Assets:
    """Fetch what the operations need (watermark, subtitles) and measure loudness for its second pass."""
    ops = spec.operations
    if ops is None:
        return Assets()
    folder = workdir / "assets"
    watermark = subtitles = None
    size: tuple[int, int] | None = None
    if ops.watermark is not None:
        watermark = _fetch(ops.watermark.uri, folder, run.namespace, name="watermark.img")
        size = _image_size(watermark)
    if ops.subtitles is not None:
        # A copy under a name of our own: its path goes into the filter graph, the client's name does not.
        fetched = _fetch(ops.subtitles.uri, folder / "fetched", run.namespace)
        subtitles = folder / f"subtitles.{ops.subtitles.format}"
        shutil.copyfile(fetched, subtitles)
    loudness: dict[tuple[int, int], dict[str, float]] | None = None
    if ops.loudness is not None and info.audio is not None and not ops.strip_audio:
        run.check_canceled()

        def on_progress(sample: Progress) -> None:
            run.reporter.report((sample.percent or 0.0) * LOUDNESS_SHARE, sample, "loudness")

        result = run.run(
            [ffmpeg_path(), *build_loudness_scan(spec, info, source)], None, on_progress, phase="loudness"
        )
        _raise_for(result, "loudness measurement")
        loudness = parse_loudnorm(result.stderr_tail)
    return Assets(watermark=watermark, watermark_size=size, subtitles=subtitles, loudness=loudness)


def _hardware(spec: JobSpec, settings: Settings, caps: Capabilities) -> HardwareSetup | None:
    """The GPU family this job encodes with, None for the CPU."""
    wants_gpu = spec.hardware is Hardware.gpu or (spec.hardware is Hardware.auto and settings.pool == "gpu")
    if not wants_gpu:
        return None
    setup = hardware_for(caps, detect_devices())
    if setup is not None:
        return setup
    if spec.fallback is Fallback.cpu:
        log.warning("no GPU encoder on this worker; encoding on the CPU as the spec allows")
        return None
    raise JobFailure(
        FailureClass.hardware_unavailable,
        "this worker has no usable GPU encoder (NVENC, Quick Sync or VA-API)",
    )


def _encode(plan: JobPlan, ffmpeg: str, run: _Attempt, *, start: float, gpu: bool) -> None:
    plan.prepare()
    share = (100.0 - start) / 100.0

    def on_progress(sample: Progress) -> None:
        run.reporter.report(start + (sample.percent or 0.0) * share, sample, "encode", force=sample.done)

    log.info(
        "ffmpeg starting",
        outputs=len(plan.outputs),
        groups=len(plan.groups),
        pictures=len(plan.pictures),
        scored=len(plan.scores),
    )
    # Tells watchers (and the dispatch benchmark) that ffmpeg starts now.
    run.reporter.report(start, None, "encode")
    result = run.run([ffmpeg, *plan.argv], plan.duration, on_progress, phase="encode", gpu=gpu)
    _raise_for(result, "encode")


def _note_plan(plan: JobPlan) -> None:
    for group in plan.groups:
        for dropped in group.ladder.dropped:
            log.info("rung dropped", group=group.name, rung=dropped["name"], reason=dropped["reason"])
    if plan.notes:
        log.info("plan notes", **{k: str(v) for k, v in plan.notes.items()})


def _raise_for(result: FfmpegResult, step: str) -> None:
    if result.canceled:
        raise JobCanceled()
    if result.timed_out:
        raise JobFailure(FailureClass.timeout, f"{step} ran past the job's time limit")
    if result.returncode != 0:
        failure = classify_ffmpeg_failure(result.returncode, result.stderr_tail)
        detail = result.stderr_tail.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise JobFailure(failure, f"ffmpeg {step} failed: {detail[0][:500]}")


def _publish(job_id: str, results: Results, namespace: Namespace) -> Published:
    """Put every piece (manifests last); return the rows and events for the task to record with the ending.

    A piece replaces an existing object only when it may (`piece.replace`: the job's own folder, or a
    deliverable with `overwrite: true`); otherwise the put is create-only and an existing object fails it.
    """
    published: list[str] = []
    try:
        for piece in results.publish_order():
            backend = backend_within(piece.uri, namespace, write=True)
            backend.put(piece.local, piece.uri, replace=piece.replace)
            published.append(piece.uri)
    except StorageError as exc:
        _unpublish(published, namespace)
        raise JobFailure(exc.failure_class, f"publishing outputs: {exc}") from exc
    except BaseException:
        _unpublish(published, namespace)
        raise
    rows = [_output_row(job_id, row) for row in results.rows]
    announced: list[tuple[str, dict[str, Any]]] = []
    for row in rows:
        announced.append(("output", {**output_view(row), **row.group_view()}))
        if row.metrics is not None:
            data = {"name": row.name, "kind": row.kind, "group": row.group_name, "metrics": row.metrics}
            announced.append(("metrics", data))
    return Published(rows, announced)


def _unpublish(uris: list[str], namespace: Namespace) -> None:
    # Newest first: the manifests, put last, disappear before what they point at.
    for uri in reversed(uris):
        try:
            backend_within(uri, namespace, write=True).delete(uri)
        except StorageError:
            log.warning("could not remove a published output after a failure", uri=uri)


def _output_row(job_id: str, row: Row) -> JobOutput:
    return JobOutput(
        job_id=job_id,
        name=row.name,
        uri=row.uri,
        container=row.container,
        size_bytes=row.size_bytes,
        duration_seconds=row.duration_seconds,
        bitrate_kbps=row.bitrate_kbps,
        width=row.width,
        height=row.height,
        video_codec=row.video_codec,
        audio_codec=row.audio_codec,
        metrics=row.metrics,
        metrics_log_uri=row.metrics_log_uri,
        kind=row.kind,
        group_name=row.group,
        details=row.details,
    )


def _remove_empty_parent(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
