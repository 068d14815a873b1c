"""Jobs end to end: HTTP API → Redis queue → real Celery worker → real ffmpeg → outputs and scores."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet import events
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from framefleet.redis_client import get_redis
from tests.conftest import make_clip, tenant_dir
from tests.integration.conftest import wait_for_state
from tests.services import ffmpeg_pids

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "canceled"}


def submit(api: Any, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/jobs", json=spec, headers={"X-API-Key": key})
    assert response.status_code == 201, response.text
    return response.json()


def fetch(api: Any, key: str, job_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return response.json()


def run_to_end(api: Any, key: str, spec: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    job = submit(api, key, spec)
    return wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, timeout)


def local_path(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


def test_two_outputs_one_process_with_quality(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    _, key = tenant_key
    spec = {
        "input": clip.as_uri(),
        "outputs": [
            {
                "name": "main",
                "container": "mp4",
                "video": {"codec": "h264", "height": 240, "preset": "veryfast"},
                "audio": {"codec": "aac", "bitrate_kbps": 96},
            },
            {
                "name": "web",
                "container": "webm",
                "video": {"codec": "vp9", "height": 120, "preset": "ultrafast"},
                "audio": {"codec": "opus"},
            },
        ],
        "quality": {"metrics": ["vmaf", "psnr", "ssim"], "subsample": 1},
    }
    job = run_to_end(api, key, spec)
    assert job["state"] == "succeeded", job
    assert job["progress"] == 100
    outputs = {o["name"]: o for o in job["outputs"]}
    assert set(outputs) == {"main", "web"}

    with av.open(str(local_path(outputs["main"]["uri"]))) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("h264", 320, 240)
        assert container.streams.audio[0].codec_context.name == "aac"
    with av.open(str(local_path(outputs["web"]["uri"]))) as container:
        video = container.streams.video[0]
        assert (video.codec_context.name, video.width, video.height) == ("vp9", 160, 120)
        assert container.streams.audio[0].codec_context.name == "opus"

    for output in outputs.values():
        assert output["duration_seconds"] == pytest.approx(2.0, abs=0.1)
        assert output["size_bytes"] == local_path(output["uri"]).stat().st_size > 0
        metrics = output["metrics"]
        assert set(metrics) >= {"vmaf", "psnr", "ssim"}
        for name in ("vmaf", "psnr", "ssim"):
            assert set(metrics[name]) >= {"mean", "min", "max", "harmonic_mean"}
        assert 50 < metrics["vmaf"]["mean"] <= 100
        assert metrics["psnr"]["mean"] > 25
        assert 0.8 < metrics["ssim"]["mean"] <= 1
        log = json.loads(local_path(output["metrics_log_uri"]).read_text())
        assert len(log["frames"]) >= 45

    stream = events.history(get_redis(), job["id"])
    kinds = [e.type for e in stream]
    assert kinds[0] == "state" and kinds[-1] == "done"
    assert kinds.count("output") == 2 and kinds.count("metrics") == 2
    progress = [e.data for e in stream if e.type == "progress"]
    assert progress and {"percent", "fps", "speed", "eta_seconds", "frame", "out_time"} <= set(progress[0])
    # Nothing but the published outputs is left in the output folder.
    leftovers = sorted(p.name for p in local_path(outputs["main"]["uri"]).parent.iterdir())
    assert leftovers == ["main.mp4", "main.mp4.quality.json", "web.webm", "web.webm.quality.json"]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


BAD_INPUTS = [
    "corrupt",
    "zero_bytes",
    "text_as_mp4",
    "truncated",
    "audio_only_for_video",
    "missing_file",
    "missing_s3_object",
    "unreachable_host",
]


@pytest.fixture(scope="module")
def bad_inputs(media_root: Path, ffmpeg: str, clip: Path) -> dict[str, str]:
    folder = media_root / "inputs" / "bad"  # in the shared library every tenant may read
    good = clip.read_bytes()
    audio_only = make_clip(ffmpeg, folder / "audio.m4a", video=False, seconds=1)
    return {
        "corrupt": _write(folder / "corrupt.mp4", good[:64] + os.urandom(50_000) + good[-64:]).as_uri(),
        "zero_bytes": _write(folder / "empty.mp4", b"").as_uri(),
        "text_as_mp4": _write(folder / "notes.mp4", b"this is not a video\n" * 100).as_uri(),
        "truncated": _write(folder / "truncated.mp4", good[: len(good) // 3]).as_uri(),
        "audio_only_for_video": audio_only.as_uri(),
        "missing_file": (folder / "nope.mp4").as_uri(),
        "missing_s3_object": "s3://media-shared/none.mp4",
        "unreachable_host": "http://127.0.0.1:9/clip.mp4",
    }


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_fails_with_a_class_and_the_worker_survives(
    case: str, bad_inputs: dict[str, str], worker: Any, api: Any, tenant_key: tuple[str, str]
) -> None:
    _, key = tenant_key
    spec = {"input": bad_inputs[case], "outputs": [{"container": "mp4", "video": {"height": 120}}]}
    job = run_to_end(api, key, spec, timeout=60)
    assert job["state"] == "failed", job
    assert job["failure_class"] in {
        "input_invalid",
        "spec_unsupported",
        "storage_unavailable",
        "storage_denied",
    }
    assert job["error"] and "Traceback" not in job["error"]
    assert worker.poll() is None, "the worker process died"
    assert job["outputs"] == []


def test_worker_keeps_working_after_bad_inputs(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    _, key = tenant_key
    job = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [{"container": "ts"}]})
    assert job["state"] == "succeeded", job


def test_expected_failure_classes(
    bad_inputs: dict[str, str], worker: Any, api: Any, tenant_key: tuple[str, str]
) -> None:
    _, key = tenant_key
    expected = {
        "zero_bytes": "input_invalid",
        "text_as_mp4": "input_invalid",
        "missing_file": "input_invalid",
        "unreachable_host": "storage_unavailable",
    }
    for case, failure_class in expected.items():
        spec = {"input": bad_inputs[case], "outputs": [{"container": "mp4"}]}
        job = run_to_end(api, key, spec, timeout=60)
        assert (case, job["failure_class"]) == (case, failure_class), job


@pytest.fixture(scope="module")
def long_clip(ffmpeg: str, media_root: Path) -> Path:
    return make_clip(ffmpeg, media_root / "inputs" / "long.mp4", seconds=60, size="640x360")


SLOW_OUTPUT = {"container": "mp4", "video": {"codec": "hevc", "preset": "slow", "crf": 20}}


def test_cancel_running_job_kills_ffmpeg_and_publishes_nothing(
    worker: Any, api: Any, tenant_key: tuple[str, str], long_clip: Path
) -> None:
    _, key = tenant_key
    job = submit(api, key, {"input": long_clip.as_uri(), "outputs": [SLOW_OUTPUT]})
    wait_for_state(lambda: fetch(api, key, job["id"]), {"running"}, 60)
    deadline = time.monotonic() + 30
    while not ffmpeg_pids(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = ffmpeg_pids(job["id"])
    assert pids, "ffmpeg never started"

    started = time.monotonic()
    response = api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": key})
    assert response.status_code == 202, response.text
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() - started < 5:
        time.sleep(0.02)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "ffmpeg still running after cancel"
    assert time.monotonic() - started < 2.0
    final = wait_for_state(lambda: fetch(api, key, job["id"]), TERMINAL, 10)
    assert final["state"] == "canceled"
    assert final["outputs"] == []
    # The worker wrote the `canceled` row, and it names the key that asked for it.
    history = api.get(f"/v1/jobs/{job['id']}/history", headers={"X-API-Key": key}).json()["items"]
    (ended,) = [t for t in history if t["to_state"] == "canceled"]
    assert ended["worker"] is not None, ended
    assert ended["actor"] is not None and ended["actor"].startswith("key:"), ended
    from framefleet.config import get_settings

    assert not local_path(get_settings().output_root).joinpath(job["id"]).exists()

    again = api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": key})
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]


def test_canceled_queued_job_never_starts(
    worker: Any, api: Any, tenant_key: tuple[str, str], long_clip: Path, clip: Path
) -> None:
    _, key = tenant_key
    blocker = submit(api, key, {"input": long_clip.as_uri(), "outputs": [SLOW_OUTPUT]})
    wait_for_state(lambda: fetch(api, key, blocker["id"]), {"running"}, 60)
    waiting = submit(api, key, {"input": clip.as_uri(), "outputs": [{"container": "mp4"}]})
    response = api.post(f"/v1/jobs/{waiting['id']}/cancel", headers={"X-API-Key": key})
    assert response.status_code == 200 and response.json()["state"] == "canceled"
    api.post(f"/v1/jobs/{blocker['id']}/cancel", headers={"X-API-Key": key})
    wait_for_state(lambda: fetch(api, key, blocker["id"]), TERMINAL, 30)
    # Give the worker time to receive the canceled job's message and drop it.
    follower = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [{"container": "ts"}]})
    assert follower["state"] == "succeeded"
    history = api.get(f"/v1/jobs/{waiting['id']}/history", headers={"X-API-Key": key}).json()
    states = [h["to_state"] for h in (history["items"] if isinstance(history, dict) else history)]
    assert states == ["queued", "canceled"]


def test_s3_input_and_output(
    worker: Any,
    api: Any,
    tenant_key: tuple[str, str],
    clip: Path,
    moto_endpoint: str,
    worker_env: dict[str, str],
) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="media-in")
    s3.create_bucket(Bucket="media-out")
    tenant, key = tenant_key
    prefix = f"tenants/{tenant}"  # the tenant's own prefix in each configured S3 root
    s3.upload_file(str(clip), "media-in", f"{prefix}/clips/clip.mp4")
    destination = f"s3://media-out/{prefix}/renditions/small.mp4"
    output = {"name": "small", "container": "mp4", "video": {"height": 120}, "destination": destination}
    spec = {"input": f"s3://media-in/{prefix}/clips/clip.mp4", "outputs": [output]}
    job = run_to_end(api, key, spec)
    assert job["state"] == "succeeded", job
    assert job["outputs"][0]["uri"] == destination
    head = s3.head_object(Bucket="media-out", Key=f"{prefix}/renditions/small.mp4")
    assert head["ContentLength"] == job["outputs"][0]["size_bytes"] > 0
    listed = s3.list_objects_v2(Bucket="media-out")["Contents"]
    assert [o["Key"] for o in listed] == [f"{prefix}/renditions/small.mp4"]

    # The same destination again: the upload is conditional (If-None-Match: *) and the object stays.
    again = run_to_end(api, key, {**spec, "outputs": [{**output, "video": {"height": 64}}]})
    assert (again["state"], again["failure_class"]) == ("failed", "storage_denied"), again
    assert "already exists" in again["error"]
    assert s3.head_object(Bucket="media-out", Key=f"{prefix}/renditions/small.mp4")["ETag"] == head["ETag"]
    # ...unless the spec opts in.
    replaced = run_to_end(
        api, key, {**spec, "outputs": [{**output, "video": {"height": 64}, "overwrite": True}]}
    )
    assert replaced["state"] == "succeeded", replaced
    assert s3.head_object(Bucket="media-out", Key=f"{prefix}/renditions/small.mp4")["ETag"] != head["ETag"]

    # Another tenant can name neither the input nor the destination.
    other = f"o-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        raw, _ = create_key(session, tenant=other)
    refused = api.post("/v1/jobs", json=spec, headers={"X-API-Key": raw})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "input", refused.text
    mine = {**spec, "input": f"s3://media-in/tenants/{other}/x.mp4"}
    refused = api.post("/v1/jobs", json=mine, headers={"X-API-Key": raw})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "outputs.0.destination"


def _key_for(tenant: str) -> str:
    with session_scope() as session:
        raw, _ = create_key(session, tenant=tenant)
    return raw


TINY = {"container": "ts", "video": {"height": 64, "preset": "ultrafast"}, "audio": {"codec": "none"}}


def test_another_tenants_output_cannot_be_read_or_overwritten_through_a_symlink(
    worker: Any, api: Any, clip: Path
) -> None:
    alpha, beta = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    a, b = _key_for(alpha), _key_for(beta)
    first = run_to_end(api, a, {"input": clip.as_uri(), "outputs": [{"name": "hd", **TINY}]})
    assert first["state"] == "succeeded", first
    hd = local_path(first["outputs"][0]["uri"])
    assert alpha in hd.parts, "outputs go to the tenant's own folder"
    before = hd.read_bytes()
    # B plants links in its own folder to A's output folder: the spelling is B's, the target is not.
    b_dir = tenant_dir(beta)
    (b_dir / "stolen.ts").symlink_to(hd)
    (b_dir / "theirs").symlink_to(hd.parent, target_is_directory=True)
    read = run_to_end(api, b, {"input": (b_dir / "stolen.ts").as_uri(), "outputs": [TINY]})
    assert (read["state"], read["failure_class"]) == ("failed", "storage_denied"), read
    assert str(hd) not in read["error"], "where the link leads is not disclosed"
    output = {**TINY, "destination": (b_dir / "theirs" / hd.name).as_uri(), "overwrite": True}
    write = run_to_end(api, b, {"input": clip.as_uri(), "outputs": [output]})
    assert (write["state"], write["failure_class"]) == ("failed", "storage_denied"), write
    assert hd.read_bytes() == before
    assert fetch(api, a, first["id"])["outputs"][0]["size_bytes"] == len(before)


def test_an_existing_file_is_replaced_only_on_request(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    tenant, key = tenant_key
    target = tenant_dir(tenant) / "published" / "show.ts"
    output = {**TINY, "destination": target.as_uri()}
    first = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [output]})
    assert first["state"] == "succeeded", first
    before = target.read_bytes()
    second = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [{**output, "video": {"height": 32}}]})
    assert (second["state"], second["failure_class"]) == ("failed", "storage_denied"), second
    assert second["failures"] == 1 and "already exists" in second["error"]
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["show.ts"], "no temporary left behind"
    third = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [{**output, "overwrite": True}]})
    assert third["state"] == "succeeded", third
    assert third["outputs"][0]["size_bytes"] == target.stat().st_size


def test_a_permanent_publish_error_is_denied_not_unavailable(
    worker: Any, api: Any, tenant_key: tuple[str, str], clip: Path
) -> None:
    # A file stands where the destination needs a folder: mkdir answers EEXIST ("File exists"). That will
    # not change on a retry, so the job must not be retried with a whole new encode (storage_unavailable).
    tenant, key = tenant_key
    blocker = tenant_dir(tenant) / "blocker"
    blocker.write_bytes(b"a file, not a folder")
    output = {**TINY, "destination": (blocker / "x.ts").as_uri()}
    job = run_to_end(api, key, {"input": clip.as_uri(), "outputs": [output]})
    assert (job["state"], job["failure_class"]) == ("failed", "storage_denied"), job
    assert "File exists" in job["error"]
