"""Submission throughput: POST /v1/jobs with 8 concurrent clients, and bare Celery publishing for reference.

Jobs ask for `hardware: gpu` so that they wait in the gpu queues (the embedded stack runs only a CPU
worker) and no transcoding competes with the API for the two cores. Target: ≥ 300 jobs/s.

The clients are plain HTTP/1.1 keep-alive connections on asyncio streams: the load generator shares the
machine with the API, and a full-featured client library costs about as much CPU per request as the
server does. Every answer is read and its status checked. Besides jobs/s (which moves with whatever else
the machine runs) the API process's own CPU time per submission is printed: it is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import bench_stack, demo_media
from bench.httpclient import read_answer, request_bytes

ROUNDS = 3


@dataclass(frozen=True)
class Round:
    jobs_per_s: float
    api_cpu_ms: float
    client_cpu_ms: float


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _post_many(host: str, port: int, key: str, total: int, clients: int, spec: dict[str, Any]) -> float:
    """POST `total` jobs over `clients` keep-alive connections; jobs/s. Raises if any answer is not 201."""
    request = request_bytes(
        "POST",
        "/v1/jobs",
        host,
        port,
        {"X-API-Key": key, "Content-Type": "application/json"},
        json.dumps(spec).encode(),
    )
    remaining = total
    failures: list[str] = []

    async def client() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                status, _headers, body = await read_answer(reader)
                if status != 201:
                    failures.append(f"{status} {body[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} submissions failed, first: {failures[0]}")
    return total / elapsed


def _bare_celery(total: int) -> float:
    from framefleet.celery_app import RUN_JOB_TASK, make_celery
    from framefleet.config import get_settings
    from framefleet.queues import queue_for

    app = make_celery(get_settings())
    queue = queue_for("gpu", "batch")
    started = time.perf_counter()
    for _ in range(total):
        app.send_task(RUN_JOB_TASK, args=["00000000-0000-0000-0000-000000000000"], queue=queue)
    return total / (time.perf_counter() - started)


def main(total: int = 3000, clients: int = 8, database_url: str | None = None) -> dict[str, float]:
    # Admission would refuse gpu jobs on this CPU-only stack; here they only need to wait in their queue.
    overrides = {"FRAMEFLEET_ADMISSION_CHECK": "false"}
    if database_url:
        overrides["FRAMEFLEET_DATABASE_URL"] = database_url
    with bench_stack(**overrides) as (stack, settings):
        spec = {
            "input": (demo_media(settings) / "x.mp4").as_uri(),
            "outputs": [{"container": "mp4"}],
            "hardware": "gpu",
            "priority": "batch",
        }
        host, port, key = "127.0.0.1", settings.api_port, stack.api_key
        api_pid = stack.children["api"].pid
        assert api_pid is not None
        asyncio.run(_post_many(host, port, key, 300, clients, spec))  # warm-up
        rounds = []
        for _ in range(ROUNDS):
            api_before, client_before = process_cpu_seconds(api_pid), time.process_time()
            rate = asyncio.run(_post_many(host, port, key, total, clients, spec))
            rounds.append(
                Round(
                    jobs_per_s=rate,
                    api_cpu_ms=(process_cpu_seconds(api_pid) - api_before) / total * 1000,
                    client_cpu_ms=(time.process_time() - client_before) / total * 1000,
                )
            )
        celery_rate = _bare_celery(total)
    result = {
        "api_jobs_per_s": statistics.median(r.jobs_per_s for r in rounds),
        "api_cpu_ms_per_job": statistics.median(r.api_cpu_ms for r in rounds),
        "client_cpu_ms_per_job": statistics.median(r.client_cpu_ms for r in rounds),
        "bare_celery_per_s": celery_rate,
    }
    print(
        f"throughput: POST /v1/jobs {result['api_jobs_per_s']:.0f} jobs/s with {clients} clients, median of "
        f"{ROUNDS} x {total} (target >= 300; rounds: {', '.join(f'{r.jobs_per_s:.0f}' for r in rounds)}); "
        f"API CPU {result['api_cpu_ms_per_job']:.2f} ms/job, "
        f"client CPU {result['client_cpu_ms_per_job']:.2f} ms/job; "
        f"bare Celery send_task {celery_rate:.0f} msgs/s from one thread"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("total", nargs="?", type=int, default=3000, help="POSTs per round")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of the embedded SQLite")
    args = parser.parse_args()
    main(args.total, database_url=args.database_url)
