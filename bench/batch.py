"""Batch submission throughput: POST /v1/jobs/batch (1,000 items a request), single POST /v1/jobs side by
side, and bare Celery send_task as the reference, in one run on one stack. Target: ≥ 1,500 jobs/s through
the batch endpoint (single POSTs ≥ 600/s).

As in bench/throughput.py the jobs ask for `hardware: gpu` so that they wait in their queue and no
transcoding competes with the API; the client is the plain asyncio HTTP client (bench/httpclient.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from bench.common import bench_stack, demo_media
from bench.httpclient import read_answer, request_bytes
from bench.throughput import _bare_celery, _post_many, process_cpu_seconds

ROUNDS = 3


async def _post_batches(
    host: str, port: int, key: str, batches: int, size: int, spec: dict[str, Any]
) -> float:
    """POST `batches` batches of `size` over 2 keep-alive connections; jobs/s. Raises unless every item
    was created."""
    body = json.dumps({"items": [spec] * size}).encode()
    request = request_bytes(
        "POST", "/v1/jobs/batch", host, port, {"X-API-Key": key, "Content-Type": "application/json"}, body
    )
    remaining = batches
    failures: list[str] = []

    async def client() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                status, _headers, answer = await read_answer(reader)
                created = json.loads(answer).get("created") if status == 200 else None
                if created != size:
                    failures.append(f"{status} {answer[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(client(), client())
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} batches failed, first: {failures[0]}")
    return batches * size / elapsed


def main(
    batches: int = 6, size: int = 1000, singles: int = 3000, database_url: str | None = None
) -> dict[str, float]:
    # Limits off: this measures the submission path, not the per-key request rate.
    overrides = {"FRAMEFLEET_ADMISSION_CHECK": "false", "FRAMEFLEET_RATE_LIMITS_ENABLED": "false"}
    if database_url:
        overrides["FRAMEFLEET_DATABASE_URL"] = database_url
    with bench_stack(**overrides) as (stack, settings):
        spec = {
            "input": (demo_media(settings) / "x.mp4").as_uri(),
            "outputs": [{"preset": "web-720p", "name": "hd"}],
            "hardware": "gpu",
            "priority": "batch",
        }
        host, port, key = "127.0.0.1", settings.api_port, stack.api_key
        api_pid = stack.children["api"].pid
        assert api_pid is not None
        asyncio.run(_post_batches(host, port, key, 1, size, spec))  # warm-up
        before = process_cpu_seconds(api_pid)
        batch_rates = [
            asyncio.run(_post_batches(host, port, key, batches, size, spec)) for _ in range(ROUNDS)
        ]
        batch_cpu_ms = (process_cpu_seconds(api_pid) - before) / (ROUNDS * batches * size) * 1000
        before = process_cpu_seconds(api_pid)
        single_rates = [asyncio.run(_post_many(host, port, key, singles, 8, spec)) for _ in range(ROUNDS)]
        single_cpu_ms = (process_cpu_seconds(api_pid) - before) / (ROUNDS * singles) * 1000
        celery_rate = _bare_celery(singles)
    result = {
        "batch_jobs_per_s": statistics.median(batch_rates),
        "single_jobs_per_s": statistics.median(single_rates),
        "bare_celery_per_s": celery_rate,
        "batch_api_cpu_ms_per_job": batch_cpu_ms,
        "single_api_cpu_ms_per_job": single_cpu_ms,
    }
    print(
        f"batch: POST /v1/jobs/batch {result['batch_jobs_per_s']:.0f} jobs/s ({size} a batch, median of "
        f"{ROUNDS} x {batches} batches: {', '.join(f'{r:.0f}' for r in batch_rates)}; target >= 1500; "
        f"API CPU {batch_cpu_ms:.2f} ms/job); "
        f"single POST /v1/jobs {result['single_jobs_per_s']:.0f} jobs/s with 8 clients "
        f"({', '.join(f'{r:.0f}' for r in single_rates)}; target >= 600; "
        f"API CPU {single_cpu_ms:.2f} ms/job); "
        f"bare Celery send_task {celery_rate:.0f} msgs/s from one thread; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6, help="batches per round")
    parser.add_argument("--size", type=int, default=1000, help="items per batch")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of the embedded SQLite")
    args = parser.parse_args()
    main(args.batches, args.size, database_url=args.database_url)
