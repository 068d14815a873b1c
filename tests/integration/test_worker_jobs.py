"""Jobs end to end: HTTP API → Redis queue → real Celery worker → real ffmpeg → outputs and scores."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import av
import pytest

from framefleet import events
from framefleet.redis_client import get_redis
from tests.conftest import make_clip
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
    "path_escape",
]


@pytest.fixture(scope="module")
def bad_inputs(media_root: Path, ffmpeg: str, clip: Path) -> dict[str, str]:
    folder = media_root / "bad"
    good = clip.read_bytes()
    audio_only = make_clip(ffmpeg, folder / "audio.m4a", video=False, seconds=1)
    return {
        "corrupt": _write(folder / "corrupt.mp4", good[:64] + os.urandom(50_000) + good[-64:]).as_uri(),
        "zero_bytes": _write(folder / "empty.mp4", b"").as_uri(),
        "text_as_mp4": _write(folder / "notes.mp4", b"this is not a video\n" * 100).as_uri(),
        "truncated": _write(folder / "truncated.mp4", good[: len(good) // 3]).as_uri(),
        "audio_only_for_video": audio_only.as_uri(),
        "missing_file": (folder / "nope.mp4").as_uri(),
        "missing_s3_object": "s3://framefleet-test-missing/none.mp4",
        "unreachable_host": "http://127.0.0.1:9/clip.mp4",
        "path_escape": (folder.as_uri() + "/../../../../etc/passwd"),
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
        "path_escape": "storage_denied",
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
    s3.upload_file(str(clip), "media-in", "clips/clip.mp4")
    _, key = tenant_key
    spec = {
        "input": "s3://media-in/clips/clip.mp4",
        "outputs": [
            {
                "name": "small",
                "container": "mp4",
                "video": {"height": 120},
                "destination": "s3://media-out/renditions/small.mp4",
            }
        ],
    }
    job = run_to_end(api, key, spec)
    assert job["state"] == "succeeded", job
    assert job["outputs"][0]["uri"] == "s3://media-out/renditions/small.mp4"
    head = s3.head_object(Bucket="media-out", Key="renditions/small.mp4")
    assert head["ContentLength"] == job["outputs"][0]["size_bytes"] > 0
    listed = s3.list_objects_v2(Bucket="media-out")["Contents"]
    assert [o["Key"] for o in listed] == ["renditions/small.mp4"]
