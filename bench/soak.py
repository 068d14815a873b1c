"""Soak: 10,000 short jobs through the API into one worker with two pool processes, on the embedded stack.

Reports jobs/s drained, lost and duplicated jobs (both must be 0), queue wait p50/p99 per priority, and the
worker's memory after warm-up and at the end (growth must stay under 10 %). Pool processes are not
recycled during the soak (FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD=0), so a leak would show.

`python -m bench.soak [jobs]`, or `python -m bench.run_all --soak`. About 15 minutes on two cores.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import bench_stack, demo_media, make_clip, percentile

# The mix of a busy service: mostly normal work, some urgent, a tail of background jobs.
PRIORITY_MIX = {"live": 5, "high": 10, "normal": 50, "low": 20, "batch": 15}
CLIENTS = 8
WARM_UP_JOBS = 300
MEMORY_GROWTH_LIMIT = 0.10


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def worker_processes(main_pid: int) -> list[int]:
    """The worker's main process and its pool processes."""
    found = [main_pid]
    for task in Path(f"/proc/{main_pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def memory(main_pid: int) -> dict[int, int]:
    return {pid: rss_kib(pid) for pid in worker_processes(main_pid)}


async def submit_all(url: str, key: str, specs: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for spec in specs:
        queue.put_nowait(spec)

    async def client_loop(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            spec = queue.get_nowait()
            response = await http.post("/v1/jobs", json=spec)
            if response.status_code != 201:
                raise RuntimeError(f"submission refused: {response.status_code} {response.text}")
            ids.append(response.json()["id"])

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=60) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(CLIENTS)))
    return ids


def counts(url: str) -> Counter[str]:
    from framefleet.db.models import Job
    from framefleet.db.session import session_scope

    with session_scope(url) as session:
        return Counter(dict(session.execute(sa.select(Job.state, sa.func.count()).group_by(Job.state)).all()))


def main(jobs: int = 10_000) -> dict[str, Any]:
    """Run the soak and print its figures."""
    from framefleet.db.models import Job, JobTransition
    from framefleet.db.session import session_scope

    overrides = {
        "FRAMEFLEET_WORKER_CONCURRENCY": "2",
        "FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD": "0",
        "FRAMEFLEET_PROGRESS_DB_INTERVAL": "5",
    }
    rng = random.Random(1)
    priorities = rng.choices(list(PRIORITY_MIX), weights=list(PRIORITY_MIX.values()), k=jobs)
    with bench_stack(**overrides) as (stack, settings):
        clip = make_clip(demo_media(settings) / "soak" / "tiny.mp4", seconds=0.2, size="160x120")
        base = {
            "input": clip.as_uri(),
            "outputs": [{"container": "ts", "video": {"preset": "ultrafast"}}],
            "cache": False,
        }
        worker_pid = stack.children["worker"].pid
        assert worker_pid is not None
        db = settings.database_url

        started = time.monotonic()
        ids = asyncio.run(
            submit_all(stack.api_url, stack.api_key, [{**base, "priority": p} for p in priorities])
        )
        submit_seconds = time.monotonic() - started

        before: dict[int, int] = {}
        while True:
            state = counts(db)
            done = state["succeeded"] + state["failed"] + state["canceled"]
            if not before and done >= WARM_UP_JOBS:
                before = memory(worker_pid)
            if done >= jobs:
                break
            if time.monotonic() - started > 4 * 3600:
                raise RuntimeError(f"soak did not drain: {dict(state)}")
            time.sleep(2)
        after = memory(worker_pid)

        with session_scope(db) as session:
            rows = session.execute(
                sa.select(
                    Job.id,
                    Job.state,
                    Job.priority,
                    Job.attempt,
                    Job.created_at,
                    Job.started_at,
                    Job.finished_at,
                )
            ).all()
            runs = Counter(
                session.scalars(sa.select(JobTransition.job_id).where(JobTransition.to_state == "running"))
            )
    submitted = set(ids)
    states = Counter(r.state for r in rows if r.id in submitted)
    lost = len(submitted) - states["succeeded"]
    duplicated = sum(1 for job_id in submitted if runs[job_id] > 1)
    first: datetime = min(r.created_at for r in rows)
    last: datetime = max(r.finished_at for r in rows if r.finished_at is not None)
    drained = len(submitted) / (last - first).total_seconds()
    waits: dict[str, list[float]] = {}
    for r in rows:
        if r.started_at is not None:
            waits.setdefault(r.priority, []).append((r.started_at - r.created_at).total_seconds())
    growth = (sum(after.values()) - sum(before.values())) / max(1, sum(before.values()))
    result: dict[str, Any] = {
        "jobs": len(submitted),
        "submit_jobs_per_s": round(len(submitted) / submit_seconds, 1),
        "drained_jobs_per_s": round(drained, 2),
        "lost": lost,
        "duplicated": duplicated,
        "states": dict(states),
        "queue_wait_s": {
            p: {
                "p50": round(percentile(waits[p], 50), 2),
                "p99": round(percentile(waits[p], 99), 2),
                "jobs": len(waits[p]),
            }
            for p in PRIORITY_MIX
            if p in waits
        },
        "worker_rss_mib_before": round(sum(before.values()) / 1024, 1),
        "worker_rss_mib_after": round(sum(after.values()) / 1024, 1),
        "worker_rss_growth": round(growth, 4),
        "per_process_kib": {"before": before, "after": after},
    }
    print(
        f"soak: {result['jobs']} jobs, submitted at {result['submit_jobs_per_s']} jobs/s, drained at "
        f"{result['drained_jobs_per_s']} jobs/s; lost {lost} (must be 0), duplicated {duplicated} (must be 0)"
    )
    for priority, stats in result["queue_wait_s"].items():
        p50, p99, count = stats["p50"], stats["p99"], stats["jobs"]
        print(f"  queue wait {priority:<6} p50 {p50:>8.2f}s  p99 {p99:>8.2f}s  ({count} jobs)")
    print(
        f"  worker memory {result['worker_rss_mib_before']} MiB after {WARM_UP_JOBS} jobs -> "
        f"{result['worker_rss_mib_after']} MiB at the end ({growth:+.1%}, limit +{MEMORY_GROWTH_LIMIT:.0%})"
    )
    failures = []
    if lost or duplicated:
        failures.append(f"lost {lost}, duplicated {duplicated}")
    if growth >= MEMORY_GROWTH_LIMIT:
        failures.append(f"worker memory grew {growth:.1%}")
    if failures:
        raise SystemExit("soak failed: " + "; ".join(failures))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
