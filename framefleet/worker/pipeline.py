"""One attempt at a job: fetch → probe → one ffmpeg for all outputs → quality pass → publish → record.

Outputs are written inside the attempt's private work directory and published only once every output
and its scores are ready, each with an atomic put; if anything fails or the job is canceled, nothing of
this attempt is left at the destinations.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from framefleet import events
from framefleet.config import Settings
from framefleet.core.failures import FailureClass, JobFailure, classify_ffmpeg_failure
from framefleet.core.spec import JobSpec, OutputSpec, VideoCodec
from framefleet.db.models import Job, JobOutput
from framefleet.db.session import session_scope
from framefleet.jobs.service import cancel_key, output_view
from framefleet.logging import get_logger
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import build_transcode, expected_duration
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.probe import MediaInfo, probe
from framefleet.media.progress import Progress
from framefleet.media.quality import build_quality, parse_vmaf_log
from framefleet.media.runner import FfmpegResult, run_ffmpeg
from framefleet.storage import backend_for, join_uri
from framefleet.storage.base import StorageError

log = get_logger("framefleet.worker")

ENCODE_SHARE_WITH_QUALITY = 0.6
PROGRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Progress))


class JobCanceled(Exception):
    """The client canceled the job while this attempt ran."""


@dataclass
class ProducedOutput:
    spec: OutputSpec
    local: Path
    destination: str
    info: MediaInfo
    metrics: dict[str, Any] | None = None
    metrics_log: Path | None = None
    published: list[str] = field(default_factory=list)


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
        now = time.monotonic()
        if force or now - self._last_event >= self.event_interval:
            self._last_event = now
            data: dict[str, Any] = sample.to_dict() if sample else dict.fromkeys(PROGRESS_FIELDS)
            data.update(percent=round(percent, 2), phase=phase)
            events.publish(self.redis, self.job_id, "progress", data)
        if force or now - self._last_db >= self.db_interval:
            self._last_db = now
            with session_scope() as session:
                session.execute(
                    sa.update(Job)
                    .where(Job.id == self.job_id, Job.attempt == self.attempt, Job.state == "running")
                    .values(progress=round(percent, 2))
                )


def run_pipeline(job: Job, *, settings: Settings, redis_client: redis.Redis, attempt: int) -> None:
    """Run one attempt of `job`; raise JobFailure or JobCanceled when it does not succeed."""
    spec = JobSpec.model_validate(job.spec)
    workdir = settings.work_root / job.id / f"attempt-{attempt}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    reporter = ProgressReporter(job.id, attempt, redis_client, settings)

    def canceled() -> bool:
        return bool(redis_client.exists(cancel_key(job.id)))

    def check_canceled() -> None:
        if canceled():
            raise JobCanceled()

    try:
        source = _fetch(spec.input, workdir / "input")
        check_canceled()
        info = probe(source)
        log.info("input probed", duration=info.duration, video=bool(info.video), audio=bool(info.audio))
        outputs = _encode(job, spec, info, source, workdir, settings, reporter, canceled)
        if spec.quality is not None:
            _score(spec, outputs, source, workdir, settings, reporter, canceled)
        check_canceled()
        _publish(job.id, outputs, redis_client)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_empty_parent(workdir.parent)


def _fetch(uri: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        return backend_for(uri).fetch(uri, into)
    except StorageError as exc:
        raise JobFailure(exc.failure_class, f"input {uri}: {exc}") from exc


def _destination(job_id: str, output: OutputSpec, settings: Settings) -> str:
    if output.destination:
        return output.destination
    return join_uri(settings.output_root, job_id, f"{output.name}.{output.container.value}")


def _encode(
    job: Job,
    spec: JobSpec,
    info: MediaInfo,
    source: Path,
    workdir: Path,
    settings: Settings,
    reporter: ProgressReporter,
    canceled: Callable[[], bool],
) -> list[ProducedOutput]:
    ffmpeg = ffmpeg_path()
    local_paths = {o.name or "": workdir / f"{o.name}.{o.container.value}" for o in spec.outputs}
    argv = [
        ffmpeg,
        *build_transcode(
            spec, info, detect_capabilities(ffmpeg), source, local_paths, threads=settings.ffmpeg_threads
        ),
    ]
    share = ENCODE_SHARE_WITH_QUALITY if spec.quality else 1.0
    duration = expected_duration(spec, info)

    def on_progress(sample: Progress) -> None:
        reporter.report((sample.percent or 0.0) * share, sample, "encode", force=sample.done)

    log.info("ffmpeg starting", outputs=len(spec.outputs))
    reporter.report(0.0, None, "encode")  # tells watchers (and the dispatch benchmark) that ffmpeg starts now
    result = run_ffmpeg(
        argv,
        on_progress=on_progress,
        duration=duration,
        should_cancel=canceled,
        poll_interval=settings.cancel_poll_interval,
        timeout=settings.job_max_seconds,
    )
    _raise_for(result, "encode")
    produced = []
    for output in spec.outputs:
        local = local_paths[output.name or ""]
        if not local.exists() or local.stat().st_size == 0:
            raise JobFailure(FailureClass.encoder_failed, f"ffmpeg produced no data for output {output.name}")
        try:
            out_info = probe(local)
        except JobFailure as exc:
            raise JobFailure(
                FailureClass.encoder_failed, f"output {output.name} is unreadable: {exc}"
            ) from exc
        produced.append(ProducedOutput(output, local, _destination(job.id, output, settings), out_info))
    return produced


def _raise_for(result: FfmpegResult, step: str) -> None:
    if result.canceled:
        raise JobCanceled()
    if result.timed_out:
        raise JobFailure(FailureClass.timeout, f"{step} ran past the job's time limit")
    if result.returncode != 0:
        failure = classify_ffmpeg_failure(result.returncode, result.stderr_tail)
        detail = result.stderr_tail.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise JobFailure(failure, f"ffmpeg {step} failed: {detail[0][:500]}")


def _score(
    spec: JobSpec,
    outputs: list[ProducedOutput],
    source: Path,
    workdir: Path,
    settings: Settings,
    reporter: ProgressReporter,
    canceled: Callable[[], bool],
) -> None:
    assert spec.quality is not None
    scored = [o for o in outputs if o.spec.video.codec is not VideoCodec.none and o.info.video is not None]
    ffmpeg = ffmpeg_path()
    threads = settings.ffmpeg_threads or _cpu_threads()
    base = ENCODE_SHARE_WITH_QUALITY * 100
    step = (100 - base) / max(1, len(scored))
    for index, output in enumerate(scored):
        video = output.info.video
        assert video is not None
        log_path = workdir / f"{output.spec.name}.quality.json"
        argv = [
            ffmpeg,
            *build_quality(
                output.local,
                source,
                width=video.display_width,
                height=video.display_height,
                fps=output.spec.video.fps,
                pix_fmt=output.spec.video.pix_fmt.value if output.spec.video.pix_fmt else None,
                quality=spec.quality,
                log_path=log_path,
                threads=threads,
            ),
        ]

        def on_progress(sample: Progress, index: int = index) -> None:
            reporter.report(base + step * (index + (sample.percent or 0.0) / 100), sample, "quality")

        result = run_ffmpeg(
            argv,
            on_progress=on_progress,
            duration=output.info.duration,
            should_cancel=canceled,
            poll_interval=settings.cancel_poll_interval,
            timeout=settings.job_max_seconds,
        )
        _raise_for(result, "quality pass")
        output.metrics = parse_vmaf_log(log_path, list(spec.quality.metrics))
        output.metrics_log = log_path


def _cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def _publish(job_id: str, outputs: list[ProducedOutput], redis_client: redis.Redis) -> None:
    """Put every output (and its per-frame quality log) at its destination, then record them."""
    published: list[str] = []
    try:
        for output in outputs:
            backend = backend_for(output.destination)
            backend.put(output.local, output.destination)
            published.append(output.destination)
            if output.metrics_log is not None:
                log_uri = output.destination + ".quality.json"
                backend.put(output.metrics_log, log_uri)
                published.append(log_uri)
    except StorageError as exc:
        _unpublish(published)
        raise JobFailure(exc.failure_class, f"publishing outputs: {exc}") from exc
    except BaseException:
        _unpublish(published)
        raise
    rows = [_output_row(job_id, o) for o in outputs]
    with session_scope() as session:
        session.execute(sa.delete(JobOutput).where(JobOutput.job_id == job_id))
        session.add_all(rows)
    for output, row in zip(outputs, rows, strict=True):
        events.publish(redis_client, job_id, "output", output_view(row))
        if output.metrics is not None:
            events.publish(redis_client, job_id, "metrics", {"name": row.name, "metrics": output.metrics})


def _unpublish(uris: list[str]) -> None:
    for uri in uris:
        try:
            backend_for(uri).delete(uri)
        except StorageError:
            log.warning("could not remove a published output after a failure", uri=uri)


def _output_row(job_id: str, output: ProducedOutput) -> JobOutput:
    info = output.info
    size = output.local.stat().st_size
    duration = info.duration
    return JobOutput(
        job_id=job_id,
        name=output.spec.name or "",
        uri=output.destination,
        container=output.spec.container.value,
        size_bytes=size,
        duration_seconds=round(duration, 3) if duration else None,
        bitrate_kbps=round(size * 8 / duration / 1000, 1) if duration else None,
        width=info.video.width if info.video else None,
        height=info.video.height if info.video else None,
        video_codec=info.video.codec if info.video else None,
        audio_codec=info.audio.codec if info.audio else None,
        metrics=output.metrics,
        metrics_log_uri=output.destination + ".quality.json" if output.metrics_log else None,
    )


def _remove_empty_parent(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
