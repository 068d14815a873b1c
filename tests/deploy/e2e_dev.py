"""End-to-end test of the compose dev profile, run by tests/deploy/run.sh once the stack is up.

Not collected by `make test` (the file name does not start with test_): it needs the containers the harness
starts. The job goes in through the published API with curl, is followed over SSE with curl, and its
output is fetched from the S3 service and decoded.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import httpx
import pytest
from botocore.config import Config

from framefleet.media.ffmpeg import ffmpeg_path

PROJECT = os.environ.get("DEPLOY_PROJECT", "framefleet-ci")
API = f"http://127.0.0.1:{os.environ.get('DEPLOY_API_PORT', '18000')}"
S3 = f"http://127.0.0.1:{os.environ.get('DEPLOY_S3_PORT', '19000')}"
FLOWER = f"http://127.0.0.1:{os.environ.get('DEPLOY_FLOWER_PORT', '15555')}"
BUCKET = "framefleet"
TENANT = "deploy-ci"
APP_SERVICES = ("api", "worker", "beat", "webhooks", "flower")


def container(service: str) -> str:
    """The name of the running container of a compose service in the harness's project."""
    names = subprocess.run(
        [
            "podman",
            "ps",
            "--filter",
            f"label=io.podman.compose.project={PROJECT}",
            "--filter",
            f"label=com.docker.compose.service={service}",
            "--format",
            "{{.Names}}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert names, f"no running container for service {service}"
    return names[0]


def inspect(name: str, template: str) -> str:
    """One field of `podman inspect`."""
    result = subprocess.run(
        ["podman", "inspect", "--format", template, name], check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def api_key() -> str:
    """A fresh admin key made inside the api container, as an operator would."""
    out = subprocess.run(
        ["podman", "exec", container("api"), "framefleet", "keys", "create", "--tenant", TENANT],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    key = lines[lines.index(next(line for line in lines if line.startswith("Created"))) + 1]
    assert len(key) > 20, out
    return key


@pytest.fixture(scope="module")
def s3() -> Any:
    """boto3 against the dev profile's S3 service, through its published port."""
    return boto3.client(
        "s3",
        endpoint_url=S3,
        aws_access_key_id="framefleet",
        aws_secret_access_key="framefleet-dev-secret",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="module")
def input_uri(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2 s 320x240 clip with audio, uploaded to the bucket the s3-init service created."""
    clip = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(
        [
            ffmpeg_path(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(clip),
        ],
        check=True,
        timeout=60,
    )
    # In the test tenant's own area of the bucket (FRAMEFLEET_S3_ROOTS in the dev profile).
    key = f"tenants/{TENANT}/inputs/{uuid.uuid4().hex}/clip.mp4"
    s3.upload_file(str(clip), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """curl with the harness's defaults: fail on HTTP errors, silent, headers kept for inspection."""
    return subprocess.run(
        ["curl", "--silent", "--show-error", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sse_events(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of an SSE body."""
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            yield event, json.loads("\n".join(data))


def test_services_are_healthy_hardened_and_unprivileged() -> None:
    database = os.environ.get("FRAMEFLEET_DATABASE_URL", "sqlite:")
    env = subprocess.run(
        ["podman", "exec", container("api"), "printenv", "FRAMEFLEET_DATABASE_URL"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert env.split(":")[0] == database.split(":")[0], env
    for service in APP_SERVICES:
        name = container(service)
        assert inspect(name, "{{.State.Health.Status}}") == "healthy", service
        assert inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true", service
        assert inspect(name, "{{.Config.User}}") == "10001:10001", service
    ready = httpx.get(f"{API}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert {c["status"] for c in ready.json()["components"].values()} == {"ok"}


def test_job_through_published_api_followed_over_sse(api_key: str, input_uri: str, s3: Any) -> None:
    spec = {
        "input": input_uri,
        "outputs": [
            {"name": "small", "container": "mp4", "video": {"codec": "h264", "height": 120, "crf": 30}}
        ],
        "quality": {"metrics": ["psnr"], "vmaf_model": "vmaf_v0.6.1"},
        "priority": "high",
    }
    submitted = curl(
        "-X",
        "POST",
        f"{API}/v1/jobs",
        "-H",
        f"X-API-Key: {api_key}",
        "-H",
        "Content-Type: application/json",
        "-H",
        f"Idempotency-Key: {uuid.uuid4().hex}",
        "-H",
        "X-Request-ID: deploy-ci-submit",
        "--include",
        "--data",
        json.dumps(spec),
    )
    head, _, body = submitted.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 201"), submitted.stdout[-3000:]
    assert "x-request-id: deploy-ci-submit" in head.lower()
    job = json.loads(body)
    assert head.lower().count(f"location: /v1/jobs/{job['id']}") == 1

    # The stream ends by itself after the `done` event; --max-time only bounds a broken run.
    started = time.monotonic()
    stream = curl(
        "--fail",
        "--no-buffer",
        "--max-time",
        "240",
        "-H",
        f"X-API-Key: {api_key}",
        "-H",
        "Accept: text/event-stream",
        f"{API}/v1/jobs/{job['id']}/events",
        timeout=260,
    )
    events = list(sse_events(stream.stdout))
    kinds = [kind for kind, _ in events]
    assert kinds and kinds[-1] == "done", stream.stdout[-2000:]
    assert events[-1][1]["state"] == "succeeded", events[-1]
    states = [data["state"] for kind, data in events if kind == "state"]
    assert "running" in states and states[-1] == "succeeded", events
    assert "output" in kinds, kinds
    print(f"job {job['id']} followed to success over SSE in {time.monotonic() - started:.1f} s")

    final = httpx.get(f"{API}/v1/jobs/{job['id']}", headers={"X-API-Key": api_key}, timeout=10).json()
    assert final["state"] == "succeeded", final
    (output,) = final["outputs"]
    assert output["uri"].startswith(f"s3://{BUCKET}/outputs/tenants/{TENANT}/{job['id']}/"), output
    key = output["uri"].split("/", 3)[3]
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"{job['id']}-small.mp4"
    s3.download_file(BUCKET, key, str(local))
    try:
        with av.open(str(local)) as media:
            stream0 = media.streams.video[0]
            assert stream0.codec_context.name == "h264"
            assert stream0.codec_context.height == 120
            frames = sum(1 for _ in media.decode(video=0))
        assert frames >= 40, frames
    finally:
        local.unlink(missing_ok=True)


def test_flower_shows_our_workers_and_queues() -> None:
    assert httpx.get(f"{FLOWER}/healthcheck", timeout=10).text == "OK"
    deadline = time.monotonic() + 60
    while True:
        metrics = httpx.get(f"{FLOWER}/metrics", timeout=10).text
        if 'flower_worker_online{worker="cpu@' in metrics or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert 'flower_worker_online{worker="cpu@' in metrics, metrics[-2000:]
    broker = httpx.get(f"{FLOWER}/broker", timeout=30).text
    for queue in ("cpu.live", "cpu.high", "cpu.normal", "cpu.low", "cpu.batch"):
        assert queue in broker, queue


def _logs(name: str) -> str:
    result = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=True)
    return result.stdout + result.stderr


def test_dev_services_reload_when_the_mounted_source_changes() -> None:
    # Last on purpose: it restarts the api and the worker. The harness mounts a snapshot of the source
    # (DEPLOY_SOURCE), so the edit never touches the work tree.
    source = Path(os.environ["DEPLOY_SOURCE"])
    api, worker = container("api"), container("worker")
    reloads, restarts = _logs(api).count("Reloading"), _logs(worker).count("change detected")
    init = source / "__init__.py"
    init.write_text(init.read_text() + "\n# edited by the deploy test: the dev services must reload\n")
    deadline = time.monotonic() + 120
    api_reloaded = worker_restarted = False
    while time.monotonic() < deadline and not (api_reloaded and worker_restarted):
        time.sleep(2)
        api_reloaded = _logs(api).count("Reloading") > reloads
        worker_restarted = _logs(worker).count("change detected") > restarts
    assert api_reloaded, "uvicorn did not reload the api after the source changed"
    assert worker_restarted, "watchfiles did not restart the worker after the source changed"
    while time.monotonic() < deadline:
        checks = [
            subprocess.run(["podman", "healthcheck", "run", name], capture_output=True)
            for name in (api, worker)
        ]
        if all(check.returncode == 0 for check in checks):
            break
        time.sleep(2)
    else:
        raise AssertionError("api and worker did not come back after reloading")
