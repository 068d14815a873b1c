"""Event streams at scale: one API process, N concurrent SSE clients over 10 running jobs, plus a probe.

`python -m bench.streams [streams ...] [--database-url postgresql://…]` (default 1000). Starts the
embedded Redis and one `framefleet api` process on a temporary data dir (no worker: a publisher in this
process plays the 10 workers, each sending numbered progress events, then `done`). It reports:

- statuses of every stream (target: no 5xx), and whether each received every event of its job in order;
- a steady 20 GET/s probe of `GET /v1/jobs/{id}`: p99 idle, and p99 while the streams are open and events
  flow (target: within 2x of idle);
- the API's resident memory per open stream (VmRSS before and after opening them; target <= 50 KB);
- Redis client connections before and after opening the streams (target: flat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import free_port, percentile
from bench.httpclient import Connection, open_stream
from framefleet.events import publish
from framefleet.storage.namespace import namespace_for

JOBS = 10
EVENTS_PER_JOB = 30
# Per job: progress twice a second, as a worker publishes it (FRAMEFLEET_PROGRESS_EVENT_INTERVAL).
EVENT_INTERVAL = 0.5
PROBE_PER_SECOND = 20
HOST = "127.0.0.1"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _wait(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up")


async def _probe(port: int, key: str, job_id: str, seconds: float) -> list[float]:
    """GET the job PROBE_PER_SECOND times a second; latencies (s). Raises on any answer but 200."""
    connection = Connection(HOST, port)
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for n in range(int(seconds * PROBE_PER_SECOND)):
            await asyncio.sleep(max(0.0, started + n / PROBE_PER_SECOND - time.perf_counter()))
            answer = await connection.request("GET", f"/v1/jobs/{job_id}", {"X-API-Key": key})
            if answer.status != 200:
                raise RuntimeError(f"probe got {answer.status}: {answer.body[:200]!r}")
            latencies.append(answer.seconds)
    finally:
        await connection.close()
    return latencies


async def _scenario(
    port: int, api_pid: int, key: str, jobs: list[str], streams: int, r: redis.Redis
) -> dict[str, Any]:
    idle = await _probe(port, key, jobs[0], 15)
    rss_before, clients_before = rss_kib(api_pid), len(r.client_list())
    opened: list[Any] = []

    async def open_one(job_id: str) -> None:
        opened.append(
            (job_id, await open_stream(HOST, port, f"/v1/jobs/{job_id}/events", {"X-API-Key": key}))
        )

    # Open in waves so the listen backlog is never the limit being measured.
    for start in range(0, streams, 200):
        await asyncio.gather(*(open_one(jobs[i % JOBS]) for i in range(start, min(streams, start + 200))))
    await asyncio.sleep(2.0)
    rss_after, clients_after = rss_kib(api_pid), len(r.client_list())
    statuses: dict[int, int] = {}
    for _, stream in opened:
        statuses[stream.status] = statuses.get(stream.status, 0) + 1

    async def follow(job_id: str, stream: Any) -> bool:
        if stream.status != 200:
            stream.close()
            return False
        seqs, last = [], None
        try:
            async for event in stream.events():
                last = event.event
                if event.event == "progress":
                    seqs.append(json.loads(event.data)["seq"])
        finally:
            stream.close()
        return seqs == list(range(EVENTS_PER_JOB)) and last == "done"

    async def publish_all() -> None:
        for seq in range(EVENTS_PER_JOB):
            for job_id in jobs:
                publish(r, job_id, "progress", {"seq": seq, "percent": seq * 100 / EVENTS_PER_JOB})
            await asyncio.sleep(EVENT_INTERVAL)
        for job_id in jobs:
            publish(r, job_id, "done", {"state": "succeeded"})

    followers = [asyncio.create_task(follow(job_id, stream)) for job_id, stream in opened]
    busy_seconds = EVENTS_PER_JOB * EVENT_INTERVAL
    loaded, _ = await asyncio.gather(_probe(port, key, jobs[0], busy_seconds), publish_all())
    complete = await asyncio.gather(*followers)
    return {
        "streams": streams,
        "statuses": statuses,
        "complete_in_order": sum(complete),
        "probe_idle_p50_ms": percentile(idle, 50) * 1000,
        "probe_idle_p99_ms": percentile(idle, 99) * 1000,
        "probe_loaded_p50_ms": percentile(loaded, 50) * 1000,
        "probe_loaded_p99_ms": percentile(loaded, 99) * 1000,
        "rss_before_mib": rss_before / 1024,
        "rss_after_mib": rss_after / 1024,
        "kib_per_stream": (rss_after - rss_before) / streams,
        "redis_clients_before": clients_before,
        "redis_clients_after": clients_after,
    }


def run(streams: int, database_url: str | None = None) -> dict[str, Any]:
    from framefleet.config import Settings, reset_settings_cache
    from framefleet.core.states import JobState
    from framefleet.db.migrate import upgrade
    from framefleet.db.session import dispose_all, session_scope
    from framefleet.jobs import state_machine
    from framefleet.keys import create_key

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, streams * 2 + 1024)), hard))
    binary = str(Path(sys.executable).parent / "framefleet")
    with tempfile.TemporaryDirectory(prefix="framefleet-streams-") as tmp:
        redis_port, api_port = free_port(), free_port()
        env = {
            **os.environ,
            "FRAMEFLEET_DATA_DIR": tmp,
            "FRAMEFLEET_REDIS_URL": f"redis://{HOST}:{redis_port}/0",
            "FRAMEFLEET_ADMISSION_CHECK": "false",
            "FRAMEFLEET_LOG_LEVEL": "WARNING",
            "FRAMEFLEET_SSE_MAX_STREAMS_PER_TENANT": str(max(streams, 2000)),
            "FRAMEFLEET_SSE_MAX_STREAMS": str(max(streams, 10_000)),
        }
        if database_url:
            env["FRAMEFLEET_DATABASE_URL"] = database_url
        os.environ.update(env)
        reset_settings_cache()
        settings = Settings()
        upgrade(settings.database_url)
        tenant = f"bench-{os.getpid()}"
        with session_scope(settings.database_url) as session:
            key, _ = create_key(session, tenant=tenant)
        children = [subprocess.Popen([binary, "redis"], env=env, stdout=subprocess.DEVNULL)]
        try:
            r = redis.Redis.from_url(settings.redis_url, decode_responses=True)
            _wait(r.ping, "redis")
            children.append(
                subprocess.Popen([binary, "api", "--host", HOST, "--port", str(api_port)], env=env)
            )
            _wait(lambda: httpx.get(f"http://{HOST}:{api_port}/healthz").status_code == 200, "api")
            jobs = []
            # Never run (no worker): only its events matter. The input lies in the tenant's own area.
            tenant_area = namespace_for(settings, tenant).local_roots(write=False)[0]
            spec = {
                "input": (tenant_area / "x.mp4").as_uri(),
                "outputs": [{"container": "mp4"}],
                "hardware": "gpu",
            }
            for _ in range(JOBS):
                answer = httpx.post(
                    f"http://{HOST}:{api_port}/v1/jobs", json=spec, headers={"X-API-Key": key}
                )
                answer.raise_for_status()
                jobs.append(answer.json()["id"])
            with session_scope(settings.database_url) as session:
                for job_id in jobs:
                    state_machine.transition(session, job_id, JobState.running, reason="bench")
            api_pid = children[1].pid
            return asyncio.run(_scenario(api_port, api_pid, key, jobs, streams, r))
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(15)
            dispose_all()
            reset_settings_cache()


def main(counts: list[int] | None = None, database_url: str | None = None) -> list[dict[str, Any]]:
    results = []
    for streams in counts or [1000]:
        result = run(streams, database_url)
        ratio = result["probe_loaded_p99_ms"] / result["probe_idle_p99_ms"]
        print(
            f"streams: {streams} open over {JOBS} jobs, statuses {result['statuses']}, "
            f"{result['complete_in_order']}/{streams} got every event in order; "
            f"probe p99 idle {result['probe_idle_p99_ms']:.1f} ms, "
            f"loaded {result['probe_loaded_p99_ms']:.1f} ms ({ratio:.2f}x; "
            f"p50 {result['probe_idle_p50_ms']:.1f} -> {result['probe_loaded_p50_ms']:.1f} ms); "
            f"API RSS {result['rss_before_mib']:.1f} -> {result['rss_after_mib']:.1f} MiB "
            f"= {result['kib_per_stream']:.1f} KiB/stream; Redis clients {result['redis_clients_before']} -> "
            f"{result['redis_clients_after']}"
        )
        results.append(result)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", nargs="*", type=int, help="open streams per run (default 1000)")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of the embedded SQLite")
    args = parser.parse_args()
    main(args.streams or None, args.database_url)
