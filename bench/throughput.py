"""Submission throughput: POST /v1/jobs with 8 concurrent clients, and bare Celery publishing for reference.

Jobs ask for `hardware: gpu` so that they wait in the gpu queues (the embedded stack runs only a CPU
worker) and no transcoding competes with the API for the two cores. Target: ≥ 300 jobs/s.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from bench.common import bench_stack


async def _post_many(url: str, key: str, total: int, clients: int, spec: dict) -> float:
    remaining = total
    errors = 0

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            response = await http.post("/v1/jobs", json=spec)
            if response.status_code != 201:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=30) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{errors} submissions failed")
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


def main(total: int = 3000, clients: int = 8) -> dict[str, float]:
    # Admission would refuse gpu jobs on this CPU-only stack; here they only need to wait in their queue.
    with bench_stack(FRAMEFLEET_ADMISSION_CHECK="false") as (stack, settings):
        spec = {
            "input": (settings.storage_roots[0] / "x.mp4").as_uri(),
            "outputs": [{"container": "mp4"}],
            "hardware": "gpu",
            "priority": "batch",
        }
        asyncio.run(_post_many(stack.api_url, stack.api_key, 200, clients, spec))  # warm-up
        api_rate = asyncio.run(_post_many(stack.api_url, stack.api_key, total, clients, spec))
        celery_rate = _bare_celery(total)
    result = {"api_jobs_per_s": api_rate, "bare_celery_per_s": celery_rate}
    print(
        f"throughput: POST /v1/jobs {api_rate:.0f} jobs/s with {clients} clients (target >= 300); "
        f"bare Celery send_task {celery_rate:.0f} msgs/s from one thread"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
