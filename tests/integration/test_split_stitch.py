"""Split-and-stitch end to end: API → real worker (two pool processes) → chunk tasks → join → one output.

Tiny clips with sparse keyframes (one every 10 s), so the cuts fall between keyframes and are made on
exact frame numbers; the chunks' scores are joined and compared with scoring the joined file directly.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import sqlalchemy as sa

from framefleet import events
from framefleet.config import get_settings
from framefleet.db.models import JobChunk
from framefleet.db.session import session_scope
from framefleet.media.quality import UNTAGGED
from framefleet.redis_client import get_redis
from framefleet.scheduling.maintenance import reap_dead_workers
from framefleet.storage.namespace import job_output_base
from tests import services
from tests.conftest import make_clip
from tests.integration.conftest import wait_for_state
from tests.integration.test_worker_jobs import TERMINAL, fetch, local_path, submit

pytestmark = pytest.mark.integration
FPS = 25
# Times around the cuts at 1 s and 2 s (0.99 s is frame 24.75: its picture is frame 25, a chunk's first).
THUMBS = [
    {"name": "at", "times": [0.0, 0.5, 0.99, 1.01, 1.98, 2.9], "width": 80},
    {"name": "every", "every_seconds": 1, "width": 80},
]
BEATS = {"FRAMEFLEET_HEARTBEAT_INTERVAL_SECONDS": "0.5", "FRAMEFLEET_HEARTBEAT_TTL_SECONDS": "2"}


@pytest.fixture(scope="module")
def pair(worker_env: dict[str, str], session_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """One real worker with two pool processes: two chunks encode at once."""
    # Short heartbeats, as in tests/chaos: a killed pool process is presumed lost after 2 s, not 30.
    env = {**worker_env, **BEATS}
    proc = services.start_worker(env, session_dir / "logs" / "worker-split.log", concurrency=2, name="split")
    yield proc
    services.stop(proc, timeout=20)


@pytest.fixture(scope="module")
def sparse_clip(ffmpeg: str, media_root: Path) -> Path:
    return make_clip(
        ffmpeg, media_root / "inputs" / "split-160.mp4", seconds=3, size="160x120", extra=["-g", "250"]
    )


@pytest.fixture(scope="module")
def slow_clip(ffmpeg: str, media_root: Path) -> Path:
    return make_clip(
        ffmpeg, media_root / "inputs" / "split-320.mp4", seconds=4, size="320x240", extra=["-g", "250"]
    )


def _video_pts(path: Path) -> tuple[list[int], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        return pts, float(stream.time_base)  # type: ignore[arg-type]


def _vmaf_of(ffmpeg: str, distorted: Path, reference: Path, log: Path) -> list[float]:
    """Score the joined file directly, as an unsplit job's pass would (every frame)."""
    graph = f"[0:v]{UNTAGGED}[d];[1:v]{UNTAGGED}[r];[d][r]libvmaf=log_fmt=json:log_path={log}:n_threads=1"
    subprocess.run(
        [
            ffmpeg,
            "-v",
            "error",
            "-i",
            str(distorted),
            "-i",
            str(reference),
            "-lavfi",
            graph,
            "-f",
            "null",
            "-",
        ],
        check=True,
    )
    return [f["metrics"]["vmaf"] for f in json.loads(log.read_text())["frames"]]


def _chunk_rows(job_id: str) -> list[JobChunk]:
    with session_scope() as session:
        rows = list(
            session.scalars(sa.select(JobChunk).where(JobChunk.job_id == job_id).order_by(JobChunk.index))
        )
        session.expunge_all()
    return rows


def test_a_split_job_joins_every_frame_once_with_its_sound_and_scores(
    pair: Any, api: Any, tenant_key: tuple[str, str], sparse_clip: Path, ffmpeg: str, tmp_path: Path
) -> None:
    _, key = tenant_key
    spec = {
        "input": sparse_clip.as_uri(),
        "outputs": [
            {"name": "hd", "container": "mp4", "video": {"codec": "h264", "crf": 30, "preset": "veryfast"}}
        ],
        "quality": {"metrics": ["vmaf"], "subsample": 1},
        "thumbnails": THUMBS,
        "parallel": {"chunks": 3, "chunk_seconds": 1},
    }
    job = submit(api, key, spec)
    unsplit = submit(api, key, {"input": sparse_clip.as_uri(), "thumbnails": THUMBS})
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 60)
    assert final["state"] == "succeeded", final
    assert final["progress"] == 100.0
    # The job's usage sums its own task's and every chunk's.
    assert final["usage"] is not None and final["usage"]["cpu_seconds"] > 0, final["usage"]
    (output,) = [o for o in final["outputs"] if o["kind"] == "file"]
    chunks = output["details"]["chunks"]
    assert [c["frames"] for c in chunks] == [25, 25, 25]  # cut on exact frames: the only keyframe is frame 0
    path = local_path(output["uri"])
    pts, base = _video_pts(path)
    assert len(pts) == 3 * FPS
    steps = {round((b - a) * base * FPS, 6) for a, b in itertools.pairwise(pts)}
    assert steps == {1.0}, steps  # no gap and no duplicate at the two joins
    with av.open(str(path)) as container:
        (sound,) = container.streams.audio
        assert sound.codec_context.name == "aac"
        audio_seconds = float(sound.duration * sound.time_base)  # type: ignore[operator]
    assert abs(audio_seconds - 3.0) < 0.05
    # The joined per-frame scores pool to what scoring the joined file gives (the chunks' first frames
    # differ by the motion feature only, which has no previous frame at a chunk's start).
    direct = _vmaf_of(ffmpeg, path, sparse_clip, tmp_path / "direct.json")
    pooled = output["metrics"]["vmaf"]["mean"]
    assert output["metrics"]["frames"] == 75
    assert abs(pooled - sum(direct) / len(direct)) < 0.5, (pooled, sum(direct) / len(direct))
    log = json.loads(local_path(output["metrics_log_uri"]).read_text())
    assert [f["frame"] for f in log["frames"]] == list(range(75))
    # Thumbnails come from the chunks holding their times: the very pictures an unsplit job takes.
    whole = wait_for_state(lambda: fetch(api, key, unsplit["id"]), TERMINAL, 60)
    assert whole["state"] == "succeeded", whole
    for name in ("at", "every"):
        split_set = next(o for o in final["outputs"] if o["name"] == name)["details"]["files"]
        whole_set = next(o for o in whole["outputs"] if o["name"] == name)["details"]["files"]
        assert [f["time"] for f in split_set] == [f["time"] for f in whole_set]
        for mine, theirs in zip(split_set, whole_set, strict=True):
            assert local_path(mine["uri"]).read_bytes() == local_path(theirs["uri"]).read_bytes(), mine
    # One job: one success in its history, the chunks done, the staging folder gone.
    history = api.get(f"/v1/jobs/{job['id']}/history", headers={"X-API-Key": key}).json()["items"]
    assert [h["to_state"] for h in history].count("succeeded") == 1
    rows = _chunk_rows(job["id"])
    assert [(r.kind, r.state) for r in rows] == [("encode", "done")] * 3 + [("join", "done")]
    assert not path.parent.joinpath(".chunks").exists()
    stream = events.history(get_redis(), job["id"])
    phases = [e.data.get("phase") for e in stream if e.type == "progress"]
    assert "split" in phases and "encode" in phases
    encoded = {
        e.data.get("chunk") for e in stream if e.type == "progress" and e.data.get("phase") == "encode"
    }
    assert encoded == {0, 1, 2}


def test_a_split_scaled_output_is_scored_as_an_unsplit_one(
    pair: Any, api: Any, tenant_key: tuple[str, str], sparse_clip: Path
) -> None:
    """A scaled output's chunks are scored at display size and at their own size, as an unsplit job's
    are: the joined result says where it was scored and keeps the own-size score beside it."""
    _, key = tenant_key
    small = {"name": "small", "container": "mp4", "video": {"height": 60, "crf": 30, "preset": "veryfast"}}
    body = {
        "input": sparse_clip.as_uri(),
        "outputs": [small],
        "quality": {"metrics": ["vmaf", "psnr"], "subsample": 1},
        "cache": False,
    }
    split = submit(api, key, {**body, "parallel": {"chunks": 3, "chunk_seconds": 1}})
    whole = submit(api, key, body)
    metrics = []
    for job in (split, whole):
        final = wait_for_state(lambda job=job: fetch(api, key, job["id"]), TERMINAL, 60)
        assert final["state"] == "succeeded", final
        (output,) = final["outputs"]
        metrics.append(output["metrics"])
    mine, theirs = metrics
    assert mine["scored_at"] == theirs["scored_at"] == {"width": 160, "height": 120}
    native = mine["native"]
    assert (native["width"], native["height"], native["frames"]) == (80, 60, 75)
    assert set(native) == set(theirs["native"]), (native, theirs["native"])
    # At its own size against a downscaled reference the output looks better than upscaled to the screen.
    assert native["vmaf"]["mean"] > mine["vmaf"]["mean"]
    assert native["psnr"]["mean"] > mine["psnr"]["mean"]


SLOW = {"name": "slow", "container": "mp4", "video": {"codec": "h264", "crf": 18, "preset": "slow"}}


def _wait_for_chunk_ffmpeg(job_id: str, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [
            p for p in services.ffmpeg_pids(job_id) if b"chunk-" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        if pids:
            return pids
        time.sleep(0.02)
    pytest.fail("no chunk ffmpeg started")


def test_cancel_stops_every_chunk(pair: Any, api: Any, tenant_key: tuple[str, str], slow_clip: Path) -> None:
    _, key = tenant_key
    job = submit(api, key, {"input": slow_clip.as_uri(), "outputs": [SLOW], "parallel": {"chunks": 4}})
    pids = _wait_for_chunk_ffmpeg(job["id"])
    response = api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": key})
    assert response.status_code == 202, response.text
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 15)
    assert final["state"] == "canceled" and final["outputs"] == []
    deadline = time.monotonic() + 5
    while services.ffmpeg_pids(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not services.ffmpeg_pids(job["id"]), "a chunk's ffmpeg outlived the cancel"
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    # No chunk still queued starts later: the job is over for all of them.
    time.sleep(1.0)
    assert all(r.state != "running" for r in _chunk_rows(job["id"]))


def test_a_worker_killed_mid_chunk_loses_only_that_chunk(
    pair: Any, api: Any, tenant_key: tuple[str, str], slow_clip: Path
) -> None:
    _, key = tenant_key
    job = submit(api, key, {"input": slow_clip.as_uri(), "outputs": [SLOW], "parallel": {"chunks": 2}})
    (victim, *_) = _wait_for_chunk_ffmpeg(job["id"])
    pool_pid = int(Path(f"/proc/{victim}/stat").read_text().split(")")[-1].split()[1])
    killed = [
        r.index
        for r in _chunk_rows(job["id"])
        if r.state == "running" and r.worker and r.worker.endswith(f":{pool_pid}")
    ]
    assert killed, "the killed process ran no chunk"
    os.kill(pool_pid, signal.SIGKILL)  # the pool process running the chunk; its ffmpeg dies with it
    settings = get_settings().model_copy(
        update={"heartbeat_interval_seconds": 0.5, "heartbeat_ttl_seconds": 2.0}
    )
    deadline = time.monotonic() + 60
    while fetch(api, key, job["id"])["state"] not in TERMINAL and time.monotonic() < deadline:
        reap_dead_workers(settings)  # the beat's reaper pass, run here at once
        time.sleep(0.2)
    final = fetch(api, key, job["id"])
    assert final["state"] == "succeeded", final
    assert final["attempt"] == 1 and final["failures"] == 0, final  # the job was never retried whole
    rows = _chunk_rows(job["id"])
    lost = rows[killed[0]]
    assert lost.attempt == 2 and lost.state == "done"  # delivered again alone
    assert all(r.attempt == 1 for r in rows if r.index not in killed and r.kind == "encode")
    (output,) = final["outputs"]
    assert len(_video_pts(local_path(output["uri"]))[0]) == 4 * FPS
    history = api.get(f"/v1/jobs/{job['id']}/history", headers={"X-API-Key": key}).json()["items"]
    assert [h["to_state"] for h in history] == ["queued", "running", "succeeded"]
    assert pair.poll() is None


def test_a_target_bitrate_is_refused_with_the_field(
    api: Any, tenant_key: tuple[str, str], sparse_clip: Path
) -> None:
    _, key = tenant_key
    body = {
        "input": sparse_clip.as_uri(),
        "outputs": [{"container": "mp4", "video": {"bitrate_kbps": 900}}],
        "parallel": {"chunks": 2},
    }
    response = api.post("/v1/jobs", json=body, headers={"X-API-Key": key})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "outputs.0.video.bitrate_kbps" in response.text and "two-pass" in response.text


def _staging_folder(tenant: str, job_id: str) -> Path:
    return local_path(job_output_base(get_settings(), tenant, job_id)) / ".chunks"


def _wait_for_a_staged_chunk(job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.kind == "encode" and r.state == "done" for r in _chunk_rows(job_id)):
            return
        time.sleep(0.02)
    pytest.fail("no chunk was staged")


def _gone(folder: Path, timeout: float = 10) -> bool:
    """Whether the folder is gone (the ending's cleanup follows the recorded state by a moment)."""
    deadline = time.monotonic() + timeout
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not folder.exists()


def test_a_canceled_split_job_leaves_no_staged_chunks(
    pair: Any, api: Any, tenant_key: tuple[str, str], slow_clip: Path
) -> None:
    tenant, key = tenant_key
    job = submit(api, key, {"input": slow_clip.as_uri(), "outputs": [SLOW], "parallel": {"chunks": 8}})
    _wait_for_a_staged_chunk(job["id"])  # some chunks wait in the staging folder, others still encode
    assert _staging_folder(tenant, job["id"]).is_dir()
    response = api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": key})
    assert response.status_code == 202, response.text
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 15)
    assert final["state"] == "canceled", final
    assert _gone(_staging_folder(tenant, job["id"])), list(_staging_folder(tenant, job["id"]).rglob("*"))


def test_a_failed_chunk_leaves_no_staged_chunks(
    pair: Any, api: Any, tenant_key: tuple[str, str], slow_clip: Path
) -> None:
    tenant, key = tenant_key
    job = submit(api, key, {"input": slow_clip.as_uri(), "outputs": [SLOW], "parallel": {"chunks": 8}})
    _wait_for_a_staged_chunk(job["id"])
    # A chunk's encoder crashes (SIGSEGV: encoder_failed, not retried) while others are staged.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(_wait_for_chunk_ffmpeg(job["id"])[0], signal.SIGSEGV)
            break
        except ProcessLookupError:
            continue  # that chunk finished first: the next one
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 30)
    assert final["state"] == "failed" and final["failure_class"] == "encoder_failed", final
    assert _gone(_staging_folder(tenant, job["id"])), list(_staging_folder(tenant, job["id"]).rglob("*"))


SPRITES = [{"name": "hover", "every_seconds": 0.5, "columns": 2, "rows": 2, "width": 80}]
POSTER = {"format": "jpeg", "width": 80}


def test_sprites_and_the_poster_of_a_split_job_are_an_unsplit_jobs(
    pair: Any, api: Any, tenant_key: tuple[str, str], sparse_clip: Path
) -> None:
    _, key = tenant_key
    pictures = {"input": sparse_clip.as_uri(), "sprites": SPRITES, "poster": POSTER}
    job = submit(
        api,
        key,
        {
            **pictures,
            "outputs": [{"name": "hd", "container": "mp4", "video": {"crf": 30, "preset": "veryfast"}}],
            "parallel": {"chunks": 3},
        },
    )
    unsplit = submit(api, key, pictures)
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 60)
    whole = wait_for_state(lambda: fetch(api, key, unsplit["id"]), TERMINAL, 60)
    assert final["state"] == "succeeded" and whole["state"] == "succeeded", (final, whole)
    mine = {o["name"]: o for o in final["outputs"]}
    theirs = {o["name"]: o for o in whole["outputs"]}
    # The poster looks at frames 8..37 (10 % of 3 s in): the cut at frame 25 moved before them.
    assert [c["frames"] for c in mine["hd"]["details"]["chunks"]] == [8, 42, 25]
    assert local_path(mine["poster"]["uri"]).read_bytes() == local_path(theirs["poster"]["uri"]).read_bytes()
    # Six tiles from three chunks on two sheets (the second half empty), the same bytes and the same map.
    sheets = mine["hover"]["details"]["sheets"]
    assert len(sheets) == 2 and mine["hover"]["details"]["tiles"] == 6
    for a, b in zip(sheets, theirs["hover"]["details"]["sheets"], strict=True):
        assert local_path(a).read_bytes() == local_path(b).read_bytes(), a
    vtt = local_path(mine["hover"]["details"]["vtt"]).read_text()
    assert vtt == local_path(theirs["hover"]["details"]["vtt"]).read_text().replace(unsplit["id"], job["id"])
    assert vtt.count("#xywh=") == 6


def test_a_quality_target_is_searched_per_chunk_and_met_by_the_joined_output(
    pair: Any, api: Any, tenant_key: tuple[str, str], sparse_clip: Path
) -> None:
    _, key = tenant_key
    target = 93.0
    output = {
        "name": "tq",
        "container": "mp4",
        "video": {"codec": "h264", "preset": "veryfast"},
        "quality_target": {"value": target, "min_crf": 15, "max_crf": 45},
    }
    spec = {
        "input": sparse_clip.as_uri(),
        "outputs": [output],
        "quality": {"metrics": ["vmaf"], "subsample": 1},
        "parallel": {"chunks": 3},
    }
    job = submit(api, key, spec)
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 120)
    assert final["state"] == "succeeded", final
    (joined,) = final["outputs"]
    chunks = joined["details"]["chunks"]
    assert [c["frames"] for c in chunks] == [25, 25, 25]
    for chunk in chunks:
        # Each chunk searched its own frames (one window: the chunk) and recorded its choice and samples.
        search = chunk["quality_target"]
        assert search["met"] and 15 <= search["chosen"] <= 45, search
        assert search["samples"] == [{"start": 0.0, "seconds": 1.0}]
        probes = {p["value"]: p for p in search["probes"]}
        assert search["chosen"] in probes and all(p["score"] > 0 for p in probes.values())
        assert all(p["score"] < target for v, p in probes.items() if v > search["chosen"])
    # The joined output, scored over every frame, meets the target within a point.
    final_score = joined["metrics"]["vmaf"]["mean"]
    assert target - 1.0 <= final_score <= target + 1.5, (final_score, [c["quality_target"] for c in chunks])
