"""Upload and download throughput through the API against a raw copy, on one embedded stack.

- upload: one tus upload (POST, then one PATCH of the whole file streamed by curl) of a generated file,
  until the upload is published in the tenant's storage, against `cp` of the same file onto the same
  filesystem plus an fsync (the upload fsyncs before publishing).
- download: GET /v1/jobs/{id}/outputs/{name} of that file by curl (a separate process, to /dev/null),
  against reading the file directly and against curl fetching it from Python's plain `http.server`; all
  from a warm page cache, so the figures are the HTTP path's own cost.

`python -m bench.storage_io --mib 1024` (default 1024 MiB, 3 rounds, median).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import bench_stack, free_port
from framefleet.core.spec import JobSpec
from framefleet.db.models import JobOutput
from framefleet.db.session import session_scope
from framefleet.jobs import service
from framefleet.keys import authenticate
from framefleet.storage.local import parse_file_uri

ROUNDS = 3
TUS = {"Tus-Resumable": "1.0.0"}


def _upload(http: httpx.Client, source: Path) -> tuple[float, str]:
    """Seconds to upload `source` with tus (POST, one PATCH streamed by curl), and where it was stored."""
    size = source.stat().st_size
    started = time.perf_counter()
    created = http.post("/v1/uploads", headers={**TUS, "Upload-Length": str(size)})
    created.raise_for_status()
    location = created.headers["Location"]
    headers = [
        f"X-API-Key: {http.headers['X-API-Key']}",
        "Tus-Resumable: 1.0.0",
        "Content-Type: application/offset+octet-stream",
        "Upload-Offset: 0",
    ]
    command = [
        "curl",
        "-sSf",
        "-X",
        "PATCH",
        "-T",
        str(source),
        "-o",
        "/dev/null",
        f"{http.base_url}{location}",
    ]
    for header in headers:
        command += ["-H", header]
    subprocess.run(command, check=True)
    elapsed = time.perf_counter() - started
    return elapsed, str(http.get(location).json()["stored_uri"])


def _raw_copy(source: Path, target: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    with target.open("rb") as handle:
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def _curl(url: str, *headers: str) -> float:
    """Seconds for curl to fetch `url` to /dev/null (failing on an HTTP error)."""
    command = ["curl", "-sSf", "-o", "/dev/null", url]
    for header in headers:
        command += ["-H", header]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def _plain_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Python's http.server on `folder`: the reference for what a plain HTTP file server does here."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.head(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


def _direct_read(path: Path) -> float:
    started = time.perf_counter()
    with path.open("rb") as handle:
        while handle.read(1024 * 1024):
            pass
    return time.perf_counter() - started


def _output_job(database_url: str, key: str, uri: str) -> str:
    """A succeeded-looking job of the key's tenant whose one output is the uploaded file."""
    spec = JobSpec.model_validate({"input": uri, "outputs": [{"name": "web", "container": "mp4"}]})
    with session_scope(database_url) as session:
        principal = authenticate(session, key)
        assert principal is not None
        row = service.new_job_row(principal=principal, spec=spec, document=spec.model_dump(mode="json"))
        service.insert_jobs(session, [row])
        session.add(JobOutput(job_id=row["id"], name="web", uri=uri, container="mp4", size_bytes=0))
    return str(row["id"])


def main(mib: int = 1024) -> dict[str, float]:
    overrides = {"FRAMEFLEET_ADMISSION_CHECK": "false", "FRAMEFLEET_RATE_LIMITS_ENABLED": "false"}
    with bench_stack(**overrides) as (stack, settings):
        work = settings.data_dir / "bench-io"
        work.mkdir()
        source = work / "source.bin"
        with source.open("wb") as handle:
            block = os.urandom(1024 * 1024)
            for _ in range(mib):
                handle.write(block)
        size = mib * 1024 * 1024
        uploads: list[float] = []
        copies: list[float] = []
        downloads: list[float] = []
        plains: list[float] = []
        reads: list[float] = []
        with httpx.Client(base_url=stack.api_url, headers={"X-API-Key": stack.api_key}, timeout=600) as http:
            stored = ""
            for _ in range(ROUNDS):
                if stored:
                    Path(parse_file_uri(stored)).unlink()
                seconds, stored = _upload(http, source)
                uploads.append(size / seconds)
                assert settings.upload_dir is not None
                copies.append(size / _raw_copy(source, settings.upload_dir / "copy.bin"))
            job_id = _output_job(settings.database_url, stack.api_key, stored)
            url = f"{stack.api_url}/v1/jobs/{job_id}/outputs/web"
            key = f"X-API-Key: {stack.api_key}"
            stored_path = Path(parse_file_uri(stored))
            server, plain = _plain_server(stored_path.parent)
            try:
                _curl(url, key)  # warm the page cache
                for _ in range(ROUNDS):
                    downloads.append(size / _curl(url, key))
                    plains.append(size / _curl(f"{plain}/{stored_path.name}"))
                    reads.append(size / _direct_read(stored_path))
            finally:
                server.terminate()
                server.wait()
        shutil.rmtree(work, ignore_errors=True)
    mb = 1024 * 1024
    result = {
        "upload_mib_per_s": statistics.median(uploads) / mb,
        "cp_mib_per_s": statistics.median(copies) / mb,
        "download_mib_per_s": statistics.median(downloads) / mb,
        "plain_http_mib_per_s": statistics.median(plains) / mb,
        "direct_read_mib_per_s": statistics.median(reads) / mb,
    }
    up, cp, down, plain_rate, read = (result[k] for k in result)
    print(
        f"storage io ({mib} MiB, median of {ROUNDS}): tus upload {up:.0f} MiB/s vs cp+fsync {cp:.0f} MiB/s "
        f"({up / cp:.0%}); download {down:.0f} MiB/s vs http.server {plain_rate:.0f} MiB/s "
        f"({down / plain_rate:.0%}) vs direct read {read:.0f} MiB/s ({down / read:.0%})"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    args = parser.parse_args()
    main(args.mib)
