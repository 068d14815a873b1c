"""Split-and-stitch on the workers: the chunk task and the join (docs/architecture.md, "Split and stitch").

The job's own task (worker/tasks.py) claims the job as usual, probes the input, plans the cuts and writes
the chunk rows, publishes one task per chunk on the job's queue and returns: no worker slot waits for the
chunks. Each chunk task claims its row (compare-and-set), encodes its frames with the job's encoder
settings and no sound (scored in the same process, as an unsplit job is), checks its frame count, and puts
its file and per-frame scores in the job's staging folder (`<job folder>/.chunks/<attempt>/`). The last
chunk to finish queues the join (scheduling/chunks.py). The join encodes the sound once over the whole
input, concatenates the chunks losslessly, muxes, checks the result (frames, timestamps, duration), pools
the joined per-frame scores, publishes exactly like an unsplit job and records the job's ending.

Every ending goes through the job's state machine as for an unsplit attempt: a chunk that fails fails the
attempt (retried whole, by the usual rules); a canceled job is seen by whichever chunk runs; a worker lost
mid-chunk is found by the reaper, which puts that chunk alone back in the queue.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

from framefleet import events
from framefleet.celery_app import RUN_CHUNK_TASK, app
from framefleet.config import Settings, get_settings
from framefleet.core.failures import FailureClass, JobFailure, classify_failure
from framefleet.core.operations import TrimSpec
from framefleet.core.spec import JobSpec, OperationsSpec
from framefleet.db.models import Job, JobChunk, Tenant
from framefleet.db.session import session_scope
from framefleet.jobs.dispatch import dispatch_chunks
from framefleet.jobs.state_machine import ensure_owner
from framefleet.lifecycle import cache, staging
from framefleet.logging import get_logger
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.chunks import (
    Chunk,
    check_joined,
    chunk_pictures,
    chunk_spec,
    concat_list,
    has_sound,
    join_argv,
    join_scores,
    poster_frames,
    sheet_argv,
    sound_spec,
    thumbnail_times,
)
from framefleet.media.command import JobPlan, expected_duration, plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.filters import Assets
from framefleet.media.planning import StreamScore
from framefleet.media.probe import MediaInfo, probe, video_timestamps
from framefleet.media.progress import Progress
from framefleet.media.quality import read_scores, summarise, write_log
from framefleet.media.results import (
    QUALITY_SUFFIX,
    Piece,
    Results,
    allow_replace,
    media_row,
    picture_results,
    score_summary,
)
from framefleet.media.runner import AttemptLimits, FfmpegAborted, attempt_limits
from framefleet.media.thumbnails import plan_poster, plan_sprites, plan_thumbnails
from framefleet.observability import cost, energy, metrics, tracing
from framefleet.observability.usage import AttemptUsage, collecting
from framefleet.redis_client import get_redis
from framefleet.scheduling import chunks
from framefleet.storage import backend_within, join_uri
from framefleet.storage.base import StorageError
from framefleet.storage.namespace import Namespace, job_output_base, namespace_for
from framefleet.webhooks import feed
from framefleet.worker import heartbeat, shutdown
from framefleet.worker.pipeline import (
    JobCanceled,
    _Attempt,
    _default_output,
    _fetch,
    _hardware,
    _profiles,
    _publish,
    _raise_for,
)
from framefleet.worker.quality_search import (
    Search,
    cut_reel,
    needs_search,
    search_outputs,
    targeted_spec,
    video_bytes,
)
from framefleet.worker.tasks import Ending, _abort_reason, _quietly, _record, rates, worker_identity

log = get_logger("framefleet.worker")


@app.task(name=RUN_CHUNK_TASK, bind=True, acks_late=True, ignore_result=True)
def run_chunk(self: Any, job_id: str, job_attempt: int, index: int) -> None:
    """Run one chunk (or the join) of a split attempt if this delivery can claim it."""
    # A `chunk.run` span in the job's trace: its publisher (the job's run, the chunk that finished last,
    # the reaper) put its context in the message headers, as for the job's own task.
    parent = tracing.extract({tracing.TRACEPARENT: getattr(self.request, tracing.TRACEPARENT, None) or ""})
    attributes = {"framefleet.job_id": job_id, "framefleet.attempt": job_attempt, "framefleet.chunk": index}
    with tracing.span(
        "chunk.run", kind=tracing.SpanKind.CONSUMER, parent=parent, attributes=attributes
    ) as span:
        _run_chunk(job_id, job_attempt, index, span)


def _run_chunk(job_id: str, job_attempt: int, index: int, span: tracing.Span | None) -> None:
    settings = get_settings()
    worker = worker_identity()
    structlog.contextvars.clear_contextvars()
    if shutdown.draining():
        # Leave the chunk queued and publish it again for another worker, as a job is passed on.
        with session_scope() as session:
            owner = session.get(Job, job_id)
            session.expunge_all()
        if owner is not None:
            dispatch_chunks(owner, job_attempt, [index])
        return
    with session_scope() as session:
        delivery = chunks.claim(session, job_id=job_id, job_attempt=job_attempt, index=index, worker=worker)
        if delivery is None:
            log.info("chunk not claimable; skipping", job_id=job_id, attempt=job_attempt, chunk=index)
            return
        heartbeat.record_current(session, worker, job_id, job_attempt)
        job = session.get(Job, job_id)
        assert job is not None
        tenant = session.get(Tenant, job.tenant_id)
        tenant_name = tenant.name if tenant is not None else str(job.tenant_id)
        session.expunge_all()
    structlog.contextvars.bind_contextvars(
        job_id=job_id, attempt=job_attempt, chunk=index, kind=delivery.kind, worker=worker
    )
    if span is not None:
        span.set_attribute("framefleet.chunk.kind", delivery.kind)
    beat = heartbeat.current()
    if beat is not None:
        beat.set_current(job_id, job_attempt, beat_now=False)
    consumed = AttemptUsage()
    before = energy.sample(settings.powercap_root)
    started = time.monotonic()
    try:
        with collecting(consumed):
            ending = _run_delivery(job, delivery, tenant_name, settings)
        if ending is not None and ending.kind != "succeeded":
            with session_scope() as session:
                chunks.stop(session, delivery=delivery)
        if ending is not None:
            # release: a tenant with a max_running_jobs quota may have a held job waiting for this slot.
            _record(job_id, ending, worker=worker, attempt=job_attempt, settings=settings, release=True)
        if ending is not None and ending.kind != "succeeded":
            # After the ending is recorded: a chunk staging later sees the attempt ended and removes its own.
            staging.discard(settings, job_id=job_id, job_attempt=job_attempt)
        outcome = ending.kind if ending is not None else "done"
        if span is not None:
            span.set_attribute("framefleet.outcome", outcome)
            if ending is not None and ending.kind == "failed":
                tracing.mark_error(span, ending.reason)
        metrics.CHUNK_RUN_TIME.labels(job.pool, delivery.kind, outcome).observe(time.monotonic() - started)
        used = cost.attempt_usage(
            cpu_seconds=consumed.cpu_seconds,
            wall_seconds=time.monotonic() - started,
            measured_joules=energy.measured_joules(
                before, energy.sample(settings.powercap_root), consumed.cpu_seconds
            ),
            rates=rates(settings),
            gpu_seconds=consumed.gpu_seconds,
        )
        # Every chunk's (and the join's) consumption adds to the one job's usage.
        with session_scope() as session:
            chunks.add_usage(session, job_id=job_id, used=used)
    finally:
        if beat is not None:
            beat.clear_current()
        structlog.contextvars.clear_contextvars()


def _run_delivery(job: Job, delivery: chunks.Delivery, tenant: str, settings: Settings) -> Ending | None:
    """Run the piece; the job's ending to record, or None while the job goes on."""
    workdir = (
        settings.work_root / job.id / f"chunk-{delivery.job_attempt}-{delivery.index}-{delivery.attempt}"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    limits = _limits(settings)
    try:
        # Inside the try: a profile whose credentials cannot be read fails the job with its class.
        namespace = namespace_for(settings, tenant, _profiles(settings, job.tenant_id))
        run = _Attempt(job, settings, get_redis(), delivery.job_attempt, namespace)
        with attempt_limits(limits):
            if run.canceled() or _cancel_requested(job.id):
                raise JobCanceled()
            if delivery.kind == chunks.JOIN:
                return _join(job, delivery, tenant, settings, run, workdir)
            _encode_chunk(job, delivery, tenant, settings, run, workdir)
            return None
    except JobCanceled:
        return Ending("canceled", "canceled by client", FailureClass.canceled)
    except FfmpegAborted as aborted:
        # Shutting down or fenced off: this chunk alone goes back to the queue for another worker.
        with session_scope() as session:
            handed = chunks.hand_back(session, delivery=delivery)
        if handed:
            dispatch_chunks(job, delivery.job_attempt, [delivery.index])
        log.info("chunk handed back", reason=aborted.reason, handed=handed)
        return None
    except JobFailure as failure:
        piece = "join" if delivery.kind == chunks.JOIN else f"chunk {delivery.index}"
        return Ending("failed", f"{piece}: {failure.message}", failure.failure_class)
    except Exception as exc:  # the worker must survive anything a chunk does
        log.exception("chunk crashed")
        return Ending(
            "failed", f"internal error: {type(exc).__name__}: {exc}"[:500], classify_failure(None, "", exc)
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _limits(settings: Settings) -> AttemptLimits:
    return AttemptLimits(
        limit_for=lambda _media: float(settings.job_max_seconds),
        stall_timeout=settings.stall_timeout_seconds or None,
        abort=_abort_reason,
    )


def _cancel_requested(job_id: str) -> bool:
    with session_scope() as session:
        return bool(session.scalar(sa.select(Job.cancel_requested).where(Job.id == job_id)))


def _source(job: Job, run: _Attempt, workdir: Path, digest: Any = None) -> tuple[JobSpec, Path, MediaInfo]:
    spec = JobSpec.model_validate(job.spec)
    source = _fetch(spec.input_uri(), workdir / "input", run.namespace, digest=digest)
    run.check_canceled()
    return spec, source, probe(source)


def _plan(
    spec: JobSpec,
    info: MediaInfo,
    source: Path,
    folder: Path,
    chunk: Chunk,
    settings: Settings,
    times: dict[str, list[float]] | None = None,
    poster: tuple[int, int] | None = None,
) -> JobPlan:
    """A chunk's encode: the job's outputs and scores, planned as an unsplit job's, over its frames, with
    the thumbnails, sprite tiles and poster that fall on them (`times`: thumbnail_times; `poster`: its
    frames)."""
    caps = detect_capabilities(ffmpeg_path())
    fps = chunk.frames / chunk.seconds
    pictures = []
    if times is not None and info.video is not None:
        src = (info.video.width, info.video.height)
        pictures = chunk_pictures(
            spec, chunk, times=times, poster=poster, fps=fps, folder=folder / "pictures", src=src
        )
    return plan_job(
        chunk_spec(spec, chunk, times=times, fps=fps),
        info,
        caps,
        source,
        folder,
        threads=settings.ffmpeg_threads,
        hardware=_hardware(spec, settings, caps),
        window=chunk,
        pictures=pictures,
    )


def _encode_chunk(
    job: Job, delivery: chunks.Delivery, tenant: str, settings: Settings, run: _Attempt, workdir: Path
) -> None:
    spec, source, info = _source(job, run, workdir)
    with session_scope() as session:
        total = session.scalar(
            sa.select(JobChunk.frames).where(
                JobChunk.job_id == job.id,
                JobChunk.job_attempt == delivery.job_attempt,
                JobChunk.kind == chunks.JOIN,
            )
        )
    chunk = delivery.chunk
    fps = chunk.frames / chunk.seconds
    times = thumbnail_times(spec, frames=int(total or 0), fps=fps)
    poster = poster_frames(spec, duration=expected_duration(spec, info), frames=int(total or 0), fps=fps)
    searches = _search(spec, info, source, chunk, settings, run, workdir / "search")
    targeted = targeted_spec(spec, searches)
    plan = _plan(targeted, info, source, workdir / "out", chunk, settings, times, poster)
    plan.prepare()
    redis_client = run.redis
    last = [0.0]
    reached = [0.0]

    def on_progress(sample: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < settings.progress_db_interval and not sample.done:
            return
        last[0] = now
        with session_scope() as session:
            overall = chunks.report(session, delivery=delivery, percent=sample.percent or 0.0)
        data = {**sample.to_dict(), "percent": overall, "phase": "encode", "chunk": delivery.index}
        # The job's progress milestones, from the sum over chunks: each is recorded once per job whichever
        # chunk passes it first (webhooks/feed.py), so chunks reporting the same one send nothing twice.
        crossed = feed.milestones_crossed(reached[0], overall, settings.webhook_progress_milestones)
        reached[0] = max(reached[0], overall)

        def publish() -> None:
            pipe = redis_client.pipeline(transaction=False)
            events.append(pipe, job.id, "progress", data)
            for milestone in crossed:
                feed.add(pipe, job.id, "job.progress", str(milestone))
            pipe.execute()

        _quietly(publish, "progress not published")

    log.info("chunk encoding", start_frame=delivery.chunk.start_frame, frames=delivery.chunk.frames)
    gpu = _hardware(spec, settings, detect_capabilities(ffmpeg_path())) is not None
    encoded = run.run([ffmpeg_path(), *plan.argv], plan.duration, on_progress, phase="chunk", gpu=gpu)
    _raise_for(encoded, "chunk encode")
    run.check_canceled()
    base = staging.staging_base(settings, tenant, job.id, delivery.job_attempt)
    staged: list[tuple[Path, str]] = []
    files: dict[str, str] = {}
    scored: dict[str, dict[str, str]] = {"scores": {}}
    for output in plan.outputs:
        name = output.output.name or ""
        got = len(video_timestamps(output.path)[0])
        if got != delivery.chunk.frames:
            raise JobFailure(
                FailureClass.encoder_failed,
                f"output {name}: the chunk has {got} frames, {delivery.chunk.frames} were cut",
            )
        files[name] = join_uri(base, f"{name}.{delivery.index}.{output.path.suffix[1:]}")
        staged.append((output.path, files[name]))
        score = output.score
        # A scaled output's stream is scored twice, at display size and at its own (`native`): both go.
        for key, stream in (("scores", score), ("native_scores", score and score.native)):
            if stream is None or not stream.measured:
                continue
            rows = read_scores(stream.logs, stream.quality, bit_depth=stream.bit_depth)
            log_path = workdir / f"{name}.{key}.json"
            log_path.write_text(json.dumps(rows), encoding="utf-8")
            scored.setdefault(key, {})[name] = join_uri(base, f"{name}.{delivery.index}.{key}.json")
            staged.append((log_path, scored[key][name]))
    pictures: dict[str, list[str]] = {}
    for picture in plan.pictures:
        # The thumbnails (the sprite tiles, the poster) whose times fall on this chunk's frames, in order.
        found = sorted(p for p in picture.folder.iterdir() if p.is_file())
        pictures[picture.name] = [
            join_uri(base, f"{picture.name}.{delivery.index}.{k}{f.suffix}") for k, f in enumerate(found)
        ]
        staged += zip(found, pictures[picture.name], strict=True)
    uris = [uri for _, uri in staged]
    with session_scope() as session:
        if not chunks.stage(session, delivery=delivery, uris=uris):
            chunks.stop(session, delivery=delivery)
            log.info("the attempt ended while the chunk encoded; nothing staged")
            return
    for local, uri in staged:
        _stage(local, uri, run.namespace)
    # Each searched output's choice for this chunk's frames (its samples' times are the chunk's own).
    paths = {output.output.name or "": output.path for output in plan.outputs}
    targets = {name: s.view(real_size=video_bytes(paths[name])) for name, s in searches.items()}
    details = {
        "files": files,
        **scored,
        "pictures": pictures,
        "staging": uris,
        "quality_target": targets,
    }
    with session_scope() as session:
        owned = chunks.owns(session, job_id=job.id, job_attempt=delivery.job_attempt)
        last_one = owned and chunks.finish(session, delivery=delivery, details=details)
        if not owned:
            chunks.stop(session, delivery=delivery)
    if not owned:
        # The attempt ended while this chunk staged, perhaps after its ender removed the staging folder.
        staging.discard(settings, job_id=job.id, job_attempt=delivery.job_attempt)
        log.info("the attempt ended while the chunk staged; its files removed")
        return
    log.info("chunk done", last=last_one)
    if last_one:
        with session_scope() as session:
            join_index = session.scalar(
                sa.select(JobChunk.index).where(
                    JobChunk.job_id == job.id,
                    JobChunk.job_attempt == delivery.job_attempt,
                    JobChunk.kind == chunks.JOIN,
                )
            )
        dispatch_chunks(job, delivery.job_attempt, [int(join_index or 0)])


def _search(
    spec: JobSpec,
    info: MediaInfo,
    source: Path,
    chunk: Chunk,
    settings: Settings,
    run: _Attempt,
    workdir: Path,
) -> dict[str, Search]:
    """Each quality target searched over this chunk's frames alone (per-scene quality): the unsplit
    search, on the input trimmed to the chunk's window."""
    if not needs_search(spec):
        return {}
    trim = TrimSpec(start=chunk.seek, duration=chunk.seconds)
    window = spec.model_copy(
        update={
            "operations": (spec.operations or OperationsSpec()).model_copy(update={"trim": trim}),
            "parallel": None,
        }
    )
    ffmpeg = ffmpeg_path()
    caps = detect_capabilities(ffmpeg)
    hardware = _hardware(spec, settings, caps)

    def step(argv: list[str], duration: float | None, _done: float) -> None:
        run.check_canceled()
        ran = run.run(
            [ffmpeg, *argv], duration, lambda _s: None, phase="quality-search", gpu=hardware is not None
        )
        _raise_for(ran, "quality search")

    threads = settings.ffmpeg_threads
    reel = cut_reel(window, info, source, workdir, threads=threads, run_step=step)
    return search_outputs(
        window, reel, caps, workdir, threads=threads, hardware=hardware, assets=Assets(), run_step=step
    )


def _stage(local: Path, uri: str, namespace: Namespace) -> None:
    try:
        backend_within(uri, namespace, write=True).put(local, uri, replace=True)
    except StorageError as exc:
        raise JobFailure(exc.failure_class, f"staging a chunk: {exc}") from exc


def _join(
    job: Job, delivery: chunks.Delivery, tenant: str, settings: Settings, run: _Attempt, workdir: Path
) -> Ending:
    digest = hashlib.sha256()
    spec, source, info = _source(job, run, workdir, digest)
    with session_scope() as session:
        parts = session.scalars(
            sa.select(JobChunk)
            .where(
                JobChunk.job_id == job.id,
                JobChunk.job_attempt == delivery.job_attempt,
                JobChunk.kind == chunks.ENCODE,
            )
            .order_by(JobChunk.index)
        ).all()
        session.expunge_all()
    ffmpeg = ffmpeg_path()
    sound: dict[str, Path] = {}
    if info.audio is not None and has_sound(spec):
        # The sound of every output, encoded once over the whole input: no seam at the chunks' joins.
        caps = detect_capabilities(ffmpeg)
        sound_plan = plan_job(
            sound_spec(spec), info, caps, source, workdir / "sound", threads=settings.ffmpeg_threads
        )
        sound_plan.prepare()
        sounded = run.run([ffmpeg, *sound_plan.argv], sound_plan.duration, lambda _s: None, phase="sound")
        _raise_for(sounded, "sound encode")
        sound = {p.output.name or "": p.path for p in sound_plan.outputs}
    first = Chunk(parts[0].index, parts[0].start_frame, parts[0].frames, parts[0].seek, parts[0].seconds)
    # Planned, not run: the scored streams' models, rates and log places, as each chunk scored them.
    planned = _plan(spec, info, source, workdir / "plan", first, settings)
    base = job_output_base(settings, tenant, job.id, _default_output(run.namespace))
    results = Results()
    frames = sum(p.frames for p in parts)
    for output in planned.outputs:
        name = output.output.name or ""
        run.check_canceled()
        folder = workdir / "join" / name
        folder.mkdir(parents=True)
        pieces = [_fetch(p.details["files"][name], folder / str(p.index), run.namespace) for p in parts]  # type: ignore[index]
        listing = folder / "chunks.ffconcat"
        listing.write_text(concat_list(pieces), encoding="utf-8")
        joined = folder / output.path.name
        argv = join_argv(listing, sound.get(name), output.output, joined)
        _raise_for(run.run([ffmpeg, *argv], None, lambda _s: None, phase="join"), "join")
        pts, base_tb = video_timestamps(joined)
        fps = _fps(parts)
        problem = check_joined(pts, frames=frames, frame_ticks=float(1 / (fps * base_tb)), fps=fps)
        if problem is not None:
            raise JobFailure(FailureClass.encoder_failed, f"output {name}: {problem}")
        uri = output.output.destination or join_uri(base, f"{name}.{output.output.container.value}")
        replace = output.output.destination is None or output.output.overwrite
        row = media_row(
            name, "file", uri, output.output.container.value, probe(joined), joined.stat().st_size
        )
        row.details = {"chunks": [_chunk_view(p, name) for p in parts]}
        results.pieces.append(Piece(joined, uri, replace=replace))
        score = output.score
        staged_native = all(name in (p.details or {}).get("native_scores", {}) for p in parts)
        if score is not None and score.native is not None and not staged_native:
            # Chunks encoded before own-size scores were staged: the joined result goes without them.
            score = dataclasses.replace(score, native=None)
        pooled = functools.partial(_joined_summary, top=score, name=name, parts=parts, folder=folder, run=run)
        row.metrics = score_summary(score, spec.quality, pooled)
        if score is not None and score.measured and spec.quality is not None:
            row.metrics_log_uri = uri + QUALITY_SUFFIX
            results.pieces.append(Piece(score.logs.unified, row.metrics_log_uri, replace=replace))
        results.rows.append(row)
    _join_pictures(spec, info, parts, frames, base, folder=workdir / "pictures", run=run, results=results)
    run.check_canceled()
    # A superseded attempt (its join was presumed lost and run again) must not publish beside the other.
    ensure_owner(job.id, delivery.job_attempt)
    published = _publish(job.id, results, run.namespace)
    fingerprint = cache.fingerprint(digest.hexdigest())
    published.input_fingerprint, published.cache_key = fingerprint, cache.cache_key(fingerprint, spec)
    with session_scope() as session:
        chunks.finish(session, delivery=delivery, details={"outputs": [r.name for r in results.rows]})
    staging.discard(settings, job_id=job.id, job_attempt=delivery.job_attempt)
    reason = f"all outputs published (joined from {len(parts)} chunks)"
    return Ending(
        "succeeded", reason, values={"progress": 100.0, **published.job_values()}, published=published
    )


def _join_pictures(
    spec: JobSpec,
    info: MediaInfo,
    parts: Any,
    frames: int,
    base: str,
    *,
    folder: Path,
    run: _Attempt,
    results: Results,
) -> None:
    """Thumbnails numbered as one set, sprite sheets tiled from the chunks' tiles, the poster: each from
    the chunks holding their frames."""
    if info.video is None:
        return
    fps = _fps(parts)
    src = (info.video.width, info.video.height)

    def staged(name: str) -> list[Path]:
        uris = [uri for p in parts for uri in (p.details or {}).get("pictures", {}).get(name, [])]
        return [_fetch(uri, folder / "staged" / name / str(k), run.namespace) for k, uri in enumerate(uris)]

    for thumbs in spec.thumbnails:
        duration = frames / fps
        plan = plan_thumbnails(thumbs, folder / (thumbs.name or "thumbnails"), duration, src)
        plan.times = thumbnail_times(spec, frames=frames, fps=fps)[plan.name]
        plan.every_seconds = 0.0  # the times are listed: each picture says its own
        plan.folder.mkdir(parents=True)
        pictures = staged(plan.name)
        if len(pictures) != len(plan.times):
            raise JobFailure(
                FailureClass.encoder_failed,
                f"thumbnails {plan.name}: the chunks made {len(pictures)} pictures"
                f" for {len(plan.times)} times",
            )
        for number, local in enumerate(pictures, start=1):
            shutil.copyfile(local, plan.folder / (plan.pattern % number))
        found = picture_results(plan, thumbs.destination, base, duration)
        results.pieces += allow_replace(found.pieces, thumbs)
        results.rows += found.rows
    # Sheets and the poster are timed as an unsplit job times them (its VTT is the same text).
    whole = expected_duration(spec, info)
    for sprites in spec.sprites:
        plan = plan_sprites(sprites, folder / (sprites.name or "sprites"), whole, src)
        plan.folder.mkdir(parents=True)
        listing = folder / f"{plan.name}.ffconcat"
        listing.write_text(concat_list(staged(plan.name)), encoding="utf-8")
        argv = sheet_argv(listing, plan)
        _raise_for(run.run([ffmpeg_path(), *argv], None, lambda _s: None, phase="sprites"), "sprite sheets")
        found = picture_results(plan, sprites.destination, base, whole)
        results.pieces += allow_replace(found.pieces, sprites)
        results.rows += found.rows
    if spec.poster is not None:
        plan = plan_poster(spec.poster, folder / (spec.poster.name or "poster"), whole, src)
        pictures = staged(plan.name)
        if len(pictures) != 1:
            raise JobFailure(
                FailureClass.encoder_failed, f"poster: the chunks made {len(pictures)} pictures, not one"
            )
        plan.folder.mkdir(parents=True)
        shutil.copyfile(pictures[0], plan.folder / plan.pattern)
        found = picture_results(plan, spec.poster.destination, base, whole)
        results.pieces += allow_replace(found.pieces, spec.poster)
        results.rows += found.rows


def _chunk_view(part: JobChunk, output: str) -> dict[str, Any]:
    """A chunk as the output's details list it: its frames, and its quality target's search if any."""
    view: dict[str, Any] = {"index": part.index, "start_frame": part.start_frame, "frames": part.frames}
    searched = (part.details or {}).get("quality_target", {}).get(output)
    if searched is not None:
        view["quality_target"] = searched
    return view


def _fps(parts: Any) -> float:
    """The frame rate the chunks were cut at (their frames over their seconds)."""
    frames = sum(p.frames for p in parts)
    seconds = sum(p.seconds for p in parts)
    return frames / seconds


def _joined_summary(
    stream: StreamScore, *, top: StreamScore | None, name: str, parts: Any, folder: Path, run: _Attempt
) -> dict[str, Any]:
    """One scored stream of output `name` over the whole job (`top`, or its own-size score): the chunks'
    per-frame scores joined in frame order, pooled, and written as the stream's unified log."""
    key = "scores" if stream is top else "native_scores"
    logs = [(p.start_frame, _scores(p.details[key][name], folder / key, run.namespace)) for p in parts]
    rows = join_scores(logs)
    summary = summarise(
        rows, stream.quality, model=stream.model, fps=stream.fps, segment_seconds=stream.segment_seconds
    )
    # The planned streams' log places (the plan was made, not run: its folders may not exist yet).
    stream.logs.unified.parent.mkdir(parents=True, exist_ok=True)
    write_log(stream.logs.unified, rows, summary, stream.fps)
    return summary


def _scores(uri: str, folder: Path, namespace: Namespace) -> list[dict[str, Any]]:
    local = _fetch(uri, folder, namespace)
    rows: list[dict[str, Any]] = json.loads(local.read_text(encoding="utf-8"))
    return rows
