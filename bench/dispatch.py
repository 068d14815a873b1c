"""Dispatch latency: from sending POST /v1/jobs to the worker starting ffmpeg, over 200 jobs.

The worker publishes a `progress` event (phase encode, 0 %) immediately before it spawns ffmpeg; its Redis
stream id is a millisecond timestamp from the same machine's clock. Targets on an idle stack: p50 ≤ 10 ms,
p99 ≤ 25 ms.

`python -m bench.dispatch [jobs] [--traced] [--database-url postgresql://…]`
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_stack, demo_media, make_clip, median, percentile
from bench.short_jobs import step_medians, traced_stack
from framefleet.cli.client import ApiClient

# The traced run: (step, from mark, to mark) in each job's trace (bench/short_jobs.py, job_marks). The
# worker sends its `progress` event just before it opens the ffmpeg.encode span.
DISPATCH_STEPS = (
    (
        "API: request -> task published (validate, insert, commit, publish)",
        "POST /v1/jobs.start",
        "job.publish.end",
    ),
    ("broker: published -> task starts in a pool process", "job.publish.end", "job.run.start"),
    ("task start -> claim", "job.run.start", "job.claim.start"),
    ("claim: CAS, history, commit", "job.claim.start", "job.claim.end"),
    ("running event, work folder, storage profiles", "job.claim.end", "job.fetch.start"),
    ("fetch (file:// in place, hashed for the cache key)", "job.fetch.start", "job.fetch.end"),
    ("cancel check, cache key", "job.fetch.end", "job.probe.start"),
    ("probe (PyAV, one frame decoded)", "job.probe.start", "job.probe.end"),
    ("plan, folders, progress event", "job.probe.end", "ffmpeg.encode.start"),
    ("whole: request -> ffmpeg starts", "POST /v1/jobs.start", "ffmpeg.encode.start"),
)


def dispatch_latencies(
    client: ApiClient, spec: dict[str, Any], *, jobs: int, warm_up: int
) -> list[tuple[str, float]]:
    """(job id, ms from sending the POST to the worker's first progress event) for `jobs` jobs of `spec`
    submitted one after another, after `warm_up` more that warm the worker up and are not counted."""
    measured: list[tuple[str, float]] = []
    for index in range(jobs + warm_up):
        sent_ms = time.time() * 1000
        job = client.submit(spec)
        start_ms = None
        for event in client.events(job["id"]):
            if start_ms is None and event.event == "progress" and event.id:
                start_ms = int(event.id.split("-")[0])
            if event.event == "done":
                break
        if index >= warm_up and start_ms is not None:
            measured.append((job["id"], start_ms - sent_ms))
    return measured


def main(jobs: int = 200, *, traced: bool = False, database_url: str | None = None) -> dict[str, Any]:
    """`traced`: the same run with the stack's spans sent to a local receiver, and the steps between them
    reported (tracing adds its own cost; the untraced run is the figure to compare with the targets)."""
    latencies: list[float] = []
    ids: list[str] = []
    marks_of: Any = None
    overrides = {"FRAMEFLEET_DATABASE_URL": database_url} if database_url else {}
    with contextlib.ExitStack() as stack_scope:
        if traced:
            tmp = Path(stack_scope.enter_context(tempfile.TemporaryDirectory()))
            stack, settings, marks_of = stack_scope.enter_context(traced_stack(overrides, tmp))
        else:
            stack, settings = stack_scope.enter_context(bench_stack(**overrides))
        clip = make_clip(demo_media(settings) / "bench" / "tiny.mp4", seconds=0.2, size="160x120")
        spec = {
            "input": clip.as_uri(),
            "outputs": [{"container": "ts", "video": {"preset": "ultrafast"}}],
            "cache": False,
        }
        with ApiClient(stack.api_url, stack.api_key, timeout=60) as client:
            for job_id, latency in dispatch_latencies(client, spec, jobs=jobs, warm_up=5):
                latencies.append(latency)
                ids.append(job_id)
        steps = step_medians(marks_of(ids), DISPATCH_STEPS) if marks_of is not None else {}
    result: dict[str, Any] = {
        "p50_ms": median(latencies),
        "p99_ms": percentile(latencies, 99),
        "jobs": len(latencies),
        "traced_step_median_ms": steps,
    }
    print(
        f"dispatch{' (traced)' if traced else ''}: POST -> ffmpeg start p50 {result['p50_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms over {len(latencies)} jobs (targets p50 <= 10 ms, p99 <= 25 ms)"
    )
    for step, value in steps.items():
        print(f"  {value:8.2f}  {step}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=int, nargs="?", default=200)
    parser.add_argument("--traced", action="store_true", help="also report the steps from the stack's spans")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of the embedded SQLite")
    args = parser.parse_args()
    main(args.jobs, traced=args.traced, database_url=args.database_url)
