"""Downloads of outputs over a real socket: Range and If-Range on local files, 307 to a pre-signed URL on S3
(moto), tenant isolation and path checks, and an HLS ladder played by ffmpeg through a share link."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import JobOutput
from framefleet.db.session import session_scope
from framefleet.storage import reset_backends
from framefleet.storage.sharing import Share, sign_share
from tests import services
from tests.api.conftest import KeyMaker, job_body, move_job
from tests.conftest import make_clip
from tests.factories import queued_job
from tests.players.conftest import HERE as PLAYERS
from tests.players.conftest import NODE_MODULES, browser  # noqa: F401 (the chromium fixture)
from tests.players.serve import serve

pytestmark = pytest.mark.timeout(90)
PLAYER_PAGES = PLAYERS / "pages"


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    proc, endpoint = services.start_moto()
    yield endpoint
    services.stop(proc)


@pytest.fixture()
def live(api_settings: Settings, moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FastAPI]]:
    """The API served by uvicorn on a free port, its S3 pointed at moto."""
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)
    reset_backends()
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    settings = api_settings.model_copy(update={"public_url": url, "s3_endpoint_url": moto})
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    yield url, app
    server.should_exit = True
    thread.join(15)
    reset_backends()


def _succeeded_job(database_url: str, key: str, outputs: list[dict[str, Any]]) -> str:
    """A succeeded job of `key`'s tenant whose output rows are `outputs` (the files are made by the test)."""
    job_id = queued_job(key, job_body())
    move_job(database_url, job_id, "running", "succeeded")
    with session_scope(database_url) as session:
        for row in outputs:
            session.add(JobOutput(job_id=job_id, container="mp4", size_bytes=0, **row))
    return job_id


def _output_folder(settings: Settings, tenant: str, job_id: str) -> Path:
    folder = Path(settings.output_root.removeprefix("file://")) / "tenants" / tenant / job_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_local_output_streams_with_ranges_and_stays_inside_its_tenant(
    live: tuple[str, FastAPI], make_key: KeyMaker, api_settings: Settings, database_url: str
) -> None:
    url, _ = live
    tenant = f"dl-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    folder = _output_folder(api_settings, tenant, "x")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (folder / "web.mp4").write_bytes(data)
    job_id = _succeeded_job(
        database_url,
        headers["X-API-Key"],
        [{"name": "web", "kind": "file", "uri": (folder / "web.mp4").as_uri()}],
    )
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        whole = http.get(f"/v1/jobs/{job_id}/outputs/web")
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        part = http.get(f"/v1/jobs/{job_id}/outputs/web", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == data[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        tail = http.get(f"/v1/jobs/{job_id}/outputs/web", headers={"Range": "bytes=-17"})
        assert tail.status_code == 206 and tail.content == data[-17:]
        beyond = http.get(f"/v1/jobs/{job_id}/outputs/web", headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416
        # If-Range with the current validator gets the range; with a stale one, the whole (changed) file.
        etag = whole.headers["etag"]
        same = http.get(f"/v1/jobs/{job_id}/outputs/web", headers={"Range": "bytes=0-9", "If-Range": etag})
        assert same.status_code == 206 and same.content == data[:10]
        stale = http.get(
            f"/v1/jobs/{job_id}/outputs/web", headers={"Range": "bytes=0-9", "If-Range": '"old"'}
        )
        assert stale.status_code == 200 and len(stale.content) == len(data)
        # A single-file output has nothing below it; '..' cannot climb out of a folder.
        assert http.get(f"/v1/jobs/{job_id}/outputs/web/x.mp4").status_code == 404
        assert http.get(f"/v1/jobs/{job_id}/outputs/nothing").status_code == 404
    other = make_key()
    with httpx.Client(base_url=url, headers=other, timeout=30) as http:
        refused = http.get(f"/v1/jobs/{job_id}/outputs/web")
        assert refused.status_code == 404
        assert refused.headers["content-type"] == "application/problem+json"


def test_an_output_outside_the_tenants_storage_is_not_served(
    live: tuple[str, FastAPI], make_key: KeyMaker, api_settings: Settings, database_url: str
) -> None:
    """A row pointing into another tenant's area (as a tampered row would) answers 404, never the bytes."""
    url, _ = live
    victim = f"v-{uuid.uuid4().hex[:8]}"
    secret = _output_folder(api_settings, victim, "y") / "secret.mp4"
    secret.write_bytes(b"not yours")
    headers = make_key()
    job_id = _succeeded_job(
        database_url, headers["X-API-Key"], [{"name": "web", "kind": "file", "uri": secret.as_uri()}]
    )
    response = httpx.get(f"{url}/v1/jobs/{job_id}/outputs/web", headers=headers, timeout=10)
    assert response.status_code == 404 and b"not yours" not in response.content


def test_s3_output_redirects_to_a_presigned_url_that_serves_ranges(
    live: tuple[str, FastAPI], make_key: KeyMaker, moto: str, database_url: str
) -> None:
    url, _ = live
    tenant = f"s3-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="media-out")
    key = f"tenants/{tenant}/job/out.mp4"
    data = os.urandom(200_000)
    s3.put_object(Bucket="media-out", Key=key, Body=data)
    job_id = _succeeded_job(
        database_url, headers["X-API-Key"], [{"name": "web", "kind": "file", "uri": f"s3://media-out/{key}"}]
    )
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        answer = http.get(f"/v1/jobs/{job_id}/outputs/web")
        assert answer.status_code == 307, answer.text
        location = answer.headers["location"]
        assert location.startswith(moto) and "Signature" in location
    # The pre-signed URL needs no key and honours ranges itself.
    fetched = httpx.get(location, headers={"Range": "bytes=10-19"}, timeout=10)
    assert fetched.status_code == 206 and fetched.content == data[10:20]


def _hls_ladder(ffmpeg: str, folder: Path, seconds: float = 2) -> None:
    """A two-rung HLS ladder (master + variant playlists + segments) as the packager lays one out."""
    clip = make_clip(ffmpeg, folder.parent / "src.mp4", seconds=seconds, size="160x120")
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(clip),
         "-map", "0:v", "-map", "0:v", "-c:v", "libx264", "-preset", "ultrafast", "-g", "12",
         "-s:v:0", "160x120", "-s:v:1", "96x72", "-f", "hls", "-hls_time", "0.5", "-hls_playlist_type", "vod",
         "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,name:r120 v:1,name:r72",
         "-hls_segment_filename", str(folder / "%v" / "seg_%03d.ts"), str(folder / "%v" / "index.m3u8")],
        check=True,
    )  # fmt: skip
    clip.unlink()


def test_hls_ladder_plays_through_a_share_link_without_a_key(
    live: tuple[str, FastAPI], make_key: KeyMaker, api_settings: Settings, database_url: str, ffmpeg: str
) -> None:
    url, _ = live
    tenant = f"sh-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    job_folder = _output_folder(api_settings, tenant, "z")
    ladder = job_folder / "hls"
    _hls_ladder(ffmpeg, ladder)
    assert (ladder / "master.m3u8").exists() and list((ladder / "r72").glob("seg_*.ts"))
    job_id = _succeeded_job(
        database_url,
        headers["X-API-Key"],
        [{"name": "hls", "kind": "manifest", "group_name": "hls", "uri": (ladder / "master.m3u8").as_uri()}],
    )
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        # Through the key: a segment of the ladder, below its manifest.
        segment = http.get(f"/v1/jobs/{job_id}/outputs/hls/r72/seg_000.ts")
        assert segment.status_code == 200 and segment.content == (ladder / "r72" / "seg_000.ts").read_bytes()
        climb = http.get(f"/v1/jobs/{job_id}/outputs/hls/%2e%2e/%2e%2e/x")
        assert climb.status_code == 404 and "'..'" in climb.json()["detail"], climb.text
        created = http.post(f"/v1/jobs/{job_id}/share", json={"output": "hls", "expires_in_seconds": 600})
        assert created.status_code == 201, created.text
        share = created.json()["url"]
        assert share.startswith(f"{url}/share/") and share.endswith("/master.m3u8")
        too_long = http.post(f"/v1/jobs/{job_id}/share", json={"output": "hls", "expires_in_seconds": 10**9})
        assert too_long.status_code == 422
        assert http.post(f"/v1/jobs/{job_id}/share", json={"output": "nope"}).status_code == 422
    # A player without a key: ffmpeg reads the master, a variant playlist and every segment by relative URL.
    played = subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", share, "-map", "0:v:0", "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert played.returncode == 0, played.stderr
    assert (
        len([line for line in played.stdout.splitlines() if not line.startswith("#")]) == 50
    )  # 2 s at 25 fps, every segment fetched
    prefix = share.rsplit("/", 1)[0]
    assert httpx.get(f"{prefix}/r120/index.m3u8").status_code == 200
    # Another output's files, a forged or an expired token: nothing.
    assert httpx.get(f"{prefix}/%2e%2e/%2e%2e/z/hls/master.m3u8").status_code == 404
    token = prefix.rsplit("/", 1)[-1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert httpx.get(f"{url}/share/{forged}/master.m3u8").status_code == 404
    expired = sign_share(Share(job_id, "hls", int(time.time()) - 1), secret_key=api_settings.secret_key)
    assert httpx.get(f"{url}/share/{expired}/master.m3u8").status_code == 404
    other_key = sign_share(Share(job_id, "hls", int(time.time()) + 60), secret_key="another-secret")
    assert httpx.get(f"{url}/share/{other_key}/master.m3u8").status_code == 404


def test_hls_js_plays_a_ladder_from_a_share_link_on_another_origin(
    live: tuple[str, FastAPI],
    make_key: KeyMaker,
    api_settings: Settings,
    database_url: str,
    ffmpeg: str,
    browser: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """hls.js in chromium, served from another origin, plays past 3 s and switches between both rungs."""
    url, _ = live
    tenant = f"br-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    ladder = _output_folder(api_settings, tenant, "b") / "hls"
    _hls_ladder(ffmpeg, ladder, seconds=5)
    job_id = _succeeded_job(
        database_url,
        headers["X-API-Key"],
        [{"name": "hls", "kind": "manifest", "group_name": "hls", "uri": (ladder / "master.m3u8").as_uri()}],
    )
    share = httpx.post(f"{url}/v1/jobs/{job_id}/share", json={"output": "hls"}, headers=headers).json()["url"]
    with serve({"lib": NODE_MODULES, "pages": PLAYER_PAGES}) as pages:
        page = browser.new_page()
        try:
            page.set_default_timeout(60_000)
            page.goto(f"{pages}/pages/hls.html?src={share}")
            result = page.evaluate("window.scenario()")
        finally:
            page.close()
    names = [step["name"] for step in result["steps"]]
    assert not result["fatal"] and names == ["played", "forced 72", "forced 120", "played on"], result
