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
import hashlib
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import redis
import sqlalchemy as sa

from framefleet import events
from framefleet.config import Settings
from framefleet.core.artifacts import MAX_TIMES
from framefleet.core.failures import FailureClass, JobFailure, classify_ffmpeg_failure
from framefleet.core.spec import MAX_CHUNKS, Fallback, Hardware, JobSpec
from framefleet.db.models import Job, JobOutput
from framefleet.db.outage import database_unavailable
from framefleet.db.session import session_scope
from framefleet.jobs.dispatch import dispatch_chunks
from framefleet.jobs.service import cancel_key, output_view
from framefleet.jobs.state_machine import assert_owner, ensure_owner
from framefleet.lifecycle import cache, staging
from framefleet.lifecycle.ledger import Object
from framefleet.logging import get_logger
from framefleet.media.capabilities import Capabilities, detect_capabilities, detect_devices, hardware_for
from framefleet.media.chunks import chunk_count, plan_cuts, poster_frames, thumbnail_times, times_in
from framefleet.media.command import JobPlan, expected_duration, plan_job
from framefleet.media.encoders import HardwareSetup
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.filters import Assets
from framefleet.media.loudness import measure_loudness
from framefleet.media.probe import MediaInfo, frame_index, probe
from framefleet.media.progress import Progress
from framefleet.media.results import Results, Row, collect_results
from framefleet.media.runner import FfmpegResult, run_ffmpeg
from framefleet.observability import tracing
from framefleet.observability import usage as attempt_usage
from framefleet.scheduling import chunks as chunk_rows
from framefleet.scheduling import preemption, registry
from framefleet.storage import backend_within, profile_service
from framefleet.storage.base import Digest, StorageError
from framefleet.storage.namespace import Namespace, job_output_base, namespace_for
from framefleet.storage.profiles import Profile
from framefleet.tenancy.secrets import SecretError
from framefleet.webhooks import feed
from framefleet.worker import heartbeat
from framefleet.worker.quality_search import (
    LadderSearch,
    Search,
    cut_reel,
    laddered_spec,
    needs_search,
    search_ladders,
    search_outputs,
    targeted_spec,
    video_bytes,
)

log = get_logger("framefleet.worker")

PROGRESS_FIELDS = tuple(f.name for f in dataclasses.fields(Progress))
# Share of the progress bar taken by the measuring pass when loudness is normalised.
LOUDNESS_SHARE = 0.1
# Share taken by the sample encodes of a quality target's search.
SEARCH_SHARE = 0.15


class JobCanceled(Exception):
    """The client canceled the job while this attempt ran."""


class AttemptSplit(Exception):
    """The attempt goes on as chunk tasks (worker/chunked.py); the job stays running, owned by them."""

    def __init__(self, count: int) -> None:
        super().__init__(f"split into {count} chunks")
        self.count = count


class ProgressReporter:
    """Throttles progress: to the event stream and to the DB, each at most once per its interval."""

    def __init__(self, job_id: str, attempt: int, redis_client: redis.Redis, settings: Settings) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.redis = redis_client
        self.event_interval = settings.progress_event_interval
        self.db_interval = settings.progress_db_interval
        self.milestones = settings.webhook_progress_milestones
        self._last_event = 0.0
        self._reached = 0.0
        # The claim already wrote progress 0; the first database write can wait a whole interval.
        self._last_db = time.monotonic()

    def report(self, percent: float, sample: Progress | None, phase: str, *, force: bool = False) -> None:
        """Publish progress, throttled (to the event stream always when `force` or at a milestone).

        Every sample is checked for milestones, so a throttled one still reports the milestones it passes;
        they go to the webhook feed in the progress event's round trip. A later attempt reaches them again
        and feeds them again: the webhook fan-out records each milestone of a job once.
        `force` (the encode's last sample) does not write the database: the ending's transaction writes
        the final progress a moment later, and for a short job that write was a transaction of its own.
        """
        now = time.monotonic()
        crossed = feed.milestones_crossed(self._reached, percent, self.milestones)
        self._reached = max(self._reached, percent)
        if force or crossed or now - self._last_event >= self.event_interval:
            self._last_event = now
            data: dict[str, Any] = sample.to_dict() if sample else dict.fromkeys(PROGRESS_FIELDS)
            data.update(percent=round(percent, 2), phase=phase)
            try:
                pipe = self.redis.pipeline(transaction=False)
                events.append(pipe, self.job_id, "progress", data)
                for milestone in crossed:
                    feed.add(pipe, self.job_id, "job.progress", str(milestone))
                pipe.execute()
            except redis.RedisError as exc:
                # Redis is transport: while it is away (a restart, a Sentinel failover) the encode goes on,
                # and the next sample after it returns replaces the ones lost.
                error = f"{type(exc).__name__}: {exc}"
                log.warning("progress event not published", job_id=self.job_id, error=error)
        if now - self._last_db >= self.db_interval:
            self._last_db = now
            try:
                with session_scope() as session:
                    session.execute(
                        sa.update(Job)
                        .where(Job.id == self.job_id, Job.attempt == self.attempt, Job.state == "running")
                        .values(progress=round(percent, 2))
                    )
            except Exception as exc:
                # Progress in the row is a convenience: while the database is away (a restart, a failover)
                # the encode goes on, the next write after it returns catches up, and the ending writes the
                # final value. The lease, not this write, decides whether the encode may go on.
                if not database_unavailable(exc):
                    raise
                log.warning(
                    "progress not recorded", job_id=self.job_id, error=f"{type(exc).__name__}: {exc}"[:300]
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
        """True once the client asked to cancel or the beat to preempt this attempt: the Redis flag, or the
        job row while Redis is away."""
        try:
            return preemption.stops(self.redis.get(cancel_key(self.job.id)), self.attempt)
        except redis.RedisError as exc:
            # A cancel is recorded in the database before the flag is set, so the row answers as well; the
            # encode goes on through a Redis restart or failover instead of failing with it.
            log.warning("cancel flag not readable", job_id=self.job.id, error=f"{type(exc).__name__}: {exc}")
            with session_scope() as session:
                return bool(session.scalar(sa.select(Job.cancel_requested).where(Job.id == self.job.id)))

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
    """What a successful attempt put in place: the output rows to record and the events that announce them,
    every object put (for the ledger), and the input's fingerprint and cache key (or the cache's source)."""

    rows: list[JobOutput]
    events: list[tuple[str, dict[str, Any]]]
    objects: list[Object] = dataclasses.field(default_factory=list)
    input_fingerprint: str | None = None
    cache_key: str | None = None
    cached_from: str | None = None

    def job_values(self) -> dict[str, Any]:
        """The job's columns this attempt sets with its success."""
        return {
            "input_fingerprint": self.input_fingerprint,
            "cache_key": self.cache_key,
            "cached_from": self.cached_from,
        }


def run_pipeline(
    job: Job, *, tenant: str, settings: Settings, redis_client: redis.Redis, attempt: int
) -> Published:
    """Run one attempt of `tenant`'s `job`; raise JobFailure or JobCanceled when it does not succeed.

    Every URI is checked against the tenant's namespace again here, whatever the API checked: the spec
    may predate the check, and only here are symlinks resolved.
    """
    spec = JobSpec.model_validate(job.spec)
    try:
        namespace = namespace_for(settings, tenant, _profiles(settings, job.tenant_id))
    except ValueError as exc:
        raise JobFailure(FailureClass.storage_denied, f"tenant {tenant!r} has no storage: {exc}") from None
    workdir = settings.work_root / job.id / f"attempt-{attempt}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    run = _Attempt(job, settings, redis_client, attempt, namespace)
    try:
        digest = hashlib.sha256()
        with tracing.span("job.fetch", attributes={"url.scheme": spec.input_uri().split(":")[0]}):
            source = _fetch(spec.input_uri(), workdir / "input", namespace, digest=digest)
        if (usage := attempt_usage.current()) is not None:
            usage.bytes_in += source.stat().st_size
        run.check_canceled()
        fingerprint = cache.fingerprint(digest.hexdigest())
        key = cache.cache_key(fingerprint, spec)
        if spec.cache and (hit := _from_cache(job, tenant, key, settings, namespace, workdir, attempt)):
            hit.input_fingerprint = fingerprint
            return hit
        with tracing.span("job.probe"):
            info = probe(source)
        log.info("input probed", duration=info.duration, video=bool(info.video), audio=bool(info.audio))
        if spec.parallel is not None:
            _split(job, spec, source, info, attempt, run)
        ffmpeg = ffmpeg_path()
        caps = detect_capabilities(ffmpeg)
        assets = _assets(spec, info, source, workdir, run)
        hardware = _hardware(spec, settings, caps)
        start = LOUDNESS_SHARE * 100 if assets.loudness is not None else 0.0
        searches: dict[str, Search] = {}
        ladders: dict[str, LadderSearch] = {}
        if needs_search(spec):
            step = _search_step(ffmpeg, run, start, gpu=hardware is not None)
            threads = settings.ffmpeg_threads
            reel = cut_reel(spec, info, source, workdir / "search", threads=threads, run_step=step)
            searches = search_outputs(
                spec,
                reel,
                caps,
                workdir / "search",
                threads=threads,
                hardware=hardware,
                assets=assets,
                run_step=step,
            )
            ladders = search_ladders(
                spec,
                reel,
                caps,
                workdir / "search",
                threads=threads,
                hardware=hardware,
                assets=assets,
                run_step=step,
            )
            start += SEARCH_SHARE * 100
        encoded = laddered_spec(targeted_spec(spec, searches), ladders)
        plan = plan_job(
            encoded,
            info,
            caps,
            source,
            workdir / "out",
            threads=settings.ffmpeg_threads,
            hardware=hardware,
            assets=assets,
        )
        _encode(plan, ffmpeg, run, start=start, gpu=hardware is not None)
        # The encode asked for a cancel while it ran; the check after packaging, before anything is
        # published, catches one that came since (one Redis round trip instead of two).
        with tracing.span("job.package"):
            results = collect_results(
                plan, encoded, job_output_base(settings, tenant, job.id, _default_output(namespace))
            )
        _record_searches(plan, results, searches, ladders)
        _note_plan(plan)
        run.check_canceled()
        # A superseded attempt (its worker was presumed dead) must not publish beside its replacement.
        ensure_owner(job.id, attempt)
        with tracing.span("job.publish_outputs", attributes={"framefleet.outputs": len(results.rows)}):
            published = _publish(job.id, results, namespace, workdir=workdir)
        published.input_fingerprint, published.cache_key = fingerprint, key
        return published
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        _remove_empty_parent(workdir.parent)


def _default_output(namespace: Namespace) -> Profile | None:
    """The tenant's profile its outputs go to when they name no destination (set by an operator), if any."""
    return next((p for p in (namespace.profiles or {}).values() if p.default_output), None)


def _profiles(settings: Settings, tenant_id: int) -> dict[str, Profile]:
    """The tenant's storage profiles with their credentials, for this attempt's fetches and publishes."""
    try:
        with session_scope(settings.database_url) as session:
            return profile_service.load(session, tenant_id=tenant_id, secret_key=settings.secret_key)
    except SecretError as exc:
        raise JobFailure(FailureClass.storage_denied, f"storage profile credentials: {exc}") from None


def _split(job: Job, spec: JobSpec, source: Path, info: MediaInfo, attempt: int, run: _Attempt) -> None:
    """Cut the attempt into chunks and publish them (raises AttemptSplit); returns when one chunk is all the
    input makes, and the attempt then encodes as an unsplit job."""
    assert spec.parallel is not None
    index = frame_index(source)
    if not index.steps_even:
        raise JobFailure(
            FailureClass.spec_unsupported,
            "parallel encoding needs a constant frame rate input: this one's frame times vary",
        )
    count = chunk_count(
        spec.parallel.chunks,
        duration=index.frames / index.fps,
        chunk_seconds=spec.parallel.chunk_seconds,
        frames=index.frames,
        limit=MAX_CHUNKS,
    )
    # Cuts on multiples of the quality subsample: each chunk's sampled frames are the whole output's.
    step = spec.quality.subsample if spec.quality is not None else 1
    # The automatic poster's look (30 frames) stays in one chunk, which picks it as an unsplit job would.
    poster = poster_frames(spec, duration=expected_duration(spec, info), frames=index.frames, fps=index.fps)
    cuts = plan_cuts(index, count, step=step, whole=poster) if count > 1 else []
    if len(cuts) < 2:
        log.info("input too short to split; encoding in one piece", frames=index.frames)
        return
    if spec.parallel.chunks == "auto" and not _others_idle(job, run):
        log.info("no other worker idle; encoding in one piece", chunks=len(cuts))
        return
    times = thumbnail_times(spec, frames=index.frames, fps=index.fps)
    for cut in cuts:
        for name, listed in times.items():
            if len(times_in(cut, listed, index.fps)) > MAX_TIMES:
                raise JobFailure(
                    FailureClass.spec_unsupported,
                    f"{name}: more than {MAX_TIMES} pictures (thumbnails or sprite tiles) would fall in "
                    "one chunk; ask for more chunks or fewer pictures",
                )
    # What an earlier attempt staged and did not remove (its worker was lost) goes with its rows.
    staging.discard(run.settings, job_id=job.id)
    with session_scope() as session:
        assert_owner(session, job.id, attempt)
        chunk_rows.start(session, job_id=job.id, job_attempt=attempt, chunks=cuts)
    dispatch_chunks(job, attempt, [c.index for c in cuts])
    log.info("split into chunks", chunks=len(cuts), frames=index.frames, keyframes=len(index.keyframes))
    try:
        split = {"percent": 0.0, "phase": "split", "chunks": [c.view() for c in cuts]}
        events.publish(run.redis, job.id, "progress", split)
    except redis.RedisError as exc:
        # The chunks are written and (or, the reconciler will) published: a lost event must not fail them.
        log.warning("split event not published", job_id=job.id, error=f"{type(exc).__name__}: {exc}")
    raise AttemptSplit(len(cuts))


def _others_idle(job: Job, run: _Attempt) -> bool:
    """Whether another pool process of the job's pool is idle now (`chunks: auto` splits only then)."""
    beat = heartbeat.current()
    with session_scope() as session:
        idle = registry.idle_slots(
            session, run.settings, pool=job.pool, exclude=beat.id if beat is not None else None
        )
    return idle > 0


def _fetch(
    uri: str, into: Path, namespace: Namespace, *, name: str | None = None, digest: Digest | None = None
) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    try:
        return backend_within(uri, namespace, write=False).fetch(uri, into, name=name, digest=digest)
    except StorageError as exc:
        raise JobFailure(exc.failure_class, f"input {uri}: {exc}") from exc


def _from_cache(
    job: Job, tenant: str, key: str, settings: Settings, namespace: Namespace, workdir: Path, attempt: int
) -> Published | None:
    """The outputs of the tenant's earlier job with the same key, copied into this job's folder; None when
    there is no such job, or its objects cannot all be copied (this attempt then encodes as usual)."""
    with session_scope() as session:
        found = cache.source_for(session, tenant_id=job.tenant_id, key=key, exclude=job.id)
        if found is None:
            return None
        source, objects, outputs = found
        session.expunge_all()
    default = _default_output(namespace)
    old = job_output_base(settings, tenant, source.id, default) + "/"
    new = job_output_base(settings, tenant, job.id, default) + "/"
    if not all(o.uri.startswith(old) for o in objects):
        return None  # explicit destinations: the same objects, not the source's own copies
    ensure_owner(job.id, attempt)
    copied: list[str] = []
    placed: list[Object] = []
    try:
        for index, obj in enumerate(objects):
            target = cache.rebase(obj.uri, old, new)
            reader = backend_within(obj.uri, namespace, write=False)
            local = reader.fetch(obj.uri, workdir / "cache" / str(index))
            size = backend_within(target, namespace, write=True).put(
                local, target, move=local.is_relative_to(workdir)
            )
            copied.append(target)
            placed.append(Object(target, size))
    except StorageError as exc:
        # Deleted behind the ledger's back, or unreadable now: encoding still gives the right answer.
        log.info("result cache source unusable; encoding", source=source.id, error=exc.message)
        _unpublish(copied, namespace)
        return None
    rows = [cache.copied_row(row, job_id=job.id, old=old, new=new) for row in outputs]
    log.info("result cache hit", source=source.id, objects=len(placed))
    return Published(rows, _announcements(rows), placed, cache_key=key, cached_from=source.id)


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

        def scan(args: list[str]) -> str:
            result = run.run([ffmpeg_path(), *args], None, on_progress, phase="loudness")
            _raise_for(result, "loudness measurement")
            return result.stderr_tail

        loudness = measure_loudness(spec, info, source, scan)
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


def _search_step(
    ffmpeg: str, run: _Attempt, start: float, *, gpu: bool
) -> Callable[[list[str], float | None, float], None]:
    """Runs one ffmpeg of a quality search; watchers see phase `quality-search` as each one starts."""

    def step(argv: list[str], duration: float | None, done: float) -> None:
        run.check_canceled()
        run.reporter.report(start + done * SEARCH_SHARE * 100, None, "quality-search", force=True)
        _raise_for(
            run.run([ffmpeg, *argv], duration, lambda _sample: None, phase="quality-search", gpu=gpu),
            "quality search",
        )

    return step


def _record_searches(
    plan: JobPlan, results: Results, searches: dict[str, Search], ladders: dict[str, LadderSearch]
) -> None:
    """Each searched output says what was tried, what was chosen, and its predicted and real size; each
    auto ladder's manifests say what each candidate size measured and which rungs were chosen."""
    paths = {p.output.name: p.path for p in plan.outputs}
    for row in results.rows:
        search = searches.get(row.name)
        if search is not None:
            view = search.view(real_size=video_bytes(paths[row.name]))
            row.details = {**(row.details or {}), "quality_target": view}
        ladder = ladders.get(row.group or "") if row.kind == "manifest" else None
        if ladder is not None:
            row.details = {**(row.details or {}), "auto_ladder": ladder.view()}


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


def _publish(
    job_id: str, results: Results, namespace: Namespace, *, workdir: Path | None = None
) -> Published:
    """Put every piece (manifests last); return the rows and events for the task to record with the ending.

    A piece replaces an existing object only when it may (`piece.replace`: the job's own folder, or a
    deliverable with `overwrite: true`); otherwise the put is create-only and an existing object fails it.
    A piece inside `workdir` (the attempt's own folder, removed after it) that no other piece puts too is
    moved into place where the store can (a rename on the same filesystem, still fsynced before it gets
    its name) instead of copied: the attempt never reads it again.
    """
    published: list[str] = []
    objects: list[Object] = []
    uses = Counter(piece.local for piece in results.pieces)
    try:
        for piece in results.publish_order():
            backend = backend_within(piece.uri, namespace, write=True)
            move = workdir is not None and uses[piece.local] == 1 and piece.local.is_relative_to(workdir)
            size = backend.put(piece.local, piece.uri, replace=piece.replace, move=move)
            published.append(piece.uri)
            objects.append(Object(piece.uri, size))
    except StorageError as exc:
        _unpublish(published, namespace)
        raise JobFailure(exc.failure_class, f"publishing outputs: {exc}") from exc
    except BaseException:
        _unpublish(published, namespace)
        raise
    rows = [_output_row(job_id, row) for row in results.rows]
    return Published(rows, _announcements(rows), objects)


def _announcements(rows: list[JobOutput]) -> list[tuple[str, dict[str, Any]]]:
    """The `output` (and `metrics`) events announcing the rows."""
    announced: list[tuple[str, dict[str, Any]]] = []
    for row in rows:
        announced.append(("output", {**output_view(row), **row.group_view()}))
        if row.metrics is not None:
            data = {"name": row.name, "kind": row.kind, "group": row.group_name, "metrics": row.metrics}
            announced.append(("metrics", data))
    return announced


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
