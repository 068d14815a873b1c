"""Fair share: tenant A floods the batch queue, tenant B then submits a few jobs; queue wait per tenant.

Runs the embedded stack (one worker with two pool processes) twice: with fair share off
(FRAMEFLEET_FAIR_SHARE_IN_FLIGHT=0, one FIFO queue) and on. Each run submits A's flood, then B's jobs, and
waits until every job has ended. Reported per tenant: queue wait (submission → claim, from the database's
created_at and started_at) p50 and p99, and how many of A's jobs finished between B's first submission and
B's last job's start.

Then the price for a tenant alone: one tenant submits `flood` jobs, with fair share off and on, and the drain
time (first submission → last job finished) and jobs per second are printed side by side, with their ratio.

`python -m bench.fair_share [flood] [in_flight]`
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import bench_stack, make_clip, percentile

BURST = 5
OUTPUT = {"name": "web", "container": "ts", "video": {"preset": "ultrafast"}}


def _key(http: httpx.Client, tenant: str) -> str:
    http.post("/v1/tenants", json={"name": tenant}).raise_for_status()
    created = http.post("/v1/keys", json={"tenant": tenant, "role": "member"})
    created.raise_for_status()
    key: str = created.json()["key"]
    return key


def run(flood: int, in_flight: int, burst: int = BURST) -> dict[str, Any]:
    """A floods, then B submits `burst` jobs (none: A alone); per-tenant queue waits and A's drain time."""
    with tempfile.TemporaryDirectory(prefix="framefleet-fair-") as tmp:
        shared = Path(tmp) / "shared"
        clip = make_clip(shared / "tiny.mp4", seconds=0.2, size="160x120")
        overrides = {
            "FRAMEFLEET_FAIR_SHARE_IN_FLIGHT": str(in_flight),
            "FRAMEFLEET_WORKER_CONCURRENCY": "2",
            "FRAMEFLEET_STORAGE_ROOTS": f'["{tmp}"]',
            "FRAMEFLEET_SHARED_STORAGE": f'["{shared.as_uri()}"]',
            # Only the per-key limits of the service stand between the flood and the API here.
            "FRAMEFLEET_RATE_LIMITS_ENABLED": "false",
        }
        with bench_stack(**overrides) as (stack, settings):
            admin = httpx.Client(base_url=stack.api_url, headers={"X-API-Key": stack.api_key}, timeout=60)
            spec = {"input": clip.as_uri(), "priority": "batch", "outputs": [OUTPUT], "cache": False}
            ids: dict[str, list[str]] = {}
            for tenant, count in (("a", flood), ("b", burst)):
                if not count:
                    continue
                key = _key(admin, f"{tenant}-{uuid.uuid4().hex[:6]}")
                with httpx.Client(base_url=stack.api_url, headers={"X-API-Key": key}, timeout=60) as http:
                    ids[tenant] = []
                    for _ in range(count):
                        response = http.post("/v1/jobs", json=spec)
                        response.raise_for_status()
                        ids[tenant].append(response.json()["id"])
            admin.close()
            rows = _wait(settings.database_url, [job_id for group in ids.values() for job_id in group])
    wait = {
        tenant: [(rows[i].started_at - rows[i].created_at).total_seconds() for i in group]
        for tenant, group in ids.items()
    }
    drain = (
        max(rows[i].finished_at for i in ids["a"]) - min(rows[i].created_at for i in ids["a"])
    ).total_seconds()
    result: dict[str, Any] = {
        "in_flight": in_flight,
        "queue_wait_s": {
            tenant: {"p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
            for tenant, v in wait.items()
        },
        "a_drain_s": round(drain, 2),
        "a_jobs_per_s": round(flood / drain, 2),
    }
    if "b" not in ids:
        return result
    b_first_submit = min(rows[i].created_at for i in ids["b"])
    b_last_start = max(rows[i].started_at for i in ids["b"])
    # A's completions while B waited (A's worker had been busy since A's first submission).
    a_between = sum(1 for i in ids["a"] if b_first_submit <= rows[i].finished_at <= b_last_start)
    return {**result, "a_finished_while_b_waited": a_between}


def _wait(db: str, ids: list[str]) -> dict[str, Any]:
    from framefleet.db.models import Job
    from framefleet.db.session import session_scope

    while True:
        time.sleep(0.5)
        with session_scope(db) as session:
            rows = session.execute(
                sa.select(Job.id, Job.state, Job.created_at, Job.started_at, Job.finished_at).where(
                    Job.id.in_(ids)
                )
            ).all()
        if all(r.state in ("succeeded", "failed", "canceled") for r in rows):
            bad = [r.state for r in rows if r.state != "succeeded"]
            if bad:
                raise RuntimeError(f"{len(bad)} jobs did not succeed: {bad[:5]}")
            return {r.id: r for r in rows}


def main(flood: int = 200, in_flight: int = 4) -> dict[str, Any]:
    result = {"off": run(flood, 0), "on": run(flood, in_flight)}
    alone = {"off": run(flood, 0, burst=0), "on": run(flood, in_flight, burst=0)}
    for label, figures in result.items():
        waits = figures["queue_wait_s"]
        print(
            f"fair share {label} (in flight {figures['in_flight']}), A floods {flood}, B submits {BURST}: "
            f"queue wait A p50 {waits['a']['p50']} s p99 {waits['a']['p99']} s, "
            f"B p50 {waits['b']['p50']} s p99 {waits['b']['p99']} s; "
            f"A jobs finished between B's first submission and B's last start: "
            f"{figures['a_finished_while_b_waited']}"
        )
    off, on = alone["off"], alone["on"]
    ratio = round(on["a_jobs_per_s"] / off["a_jobs_per_s"], 3)
    print(
        f"one tenant alone, {flood} jobs: drain {off['a_drain_s']} s ({off['a_jobs_per_s']} jobs/s) "
        f"with fair share off, {on['a_drain_s']} s ({on['a_jobs_per_s']} jobs/s) on (in flight {in_flight}); "
        f"throughput on/off {ratio}"
    )
    return {**result, "alone": {**alone, "throughput_on_over_off": ratio}}


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
