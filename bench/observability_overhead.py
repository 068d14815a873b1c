"""What metrics and tracing cost: submission throughput and dispatch latency with each of them off and on.

Four set-ups of the same embedded stack, run in turns (A B C D A B C D ...) so that they share the machine's
load: `bare` (the worker's, beat's and webhook sender's metrics servers off, no tracing), `metrics` (those
servers on, as `framefleet up` runs them; no tracing), `traced` (metrics, plus OpenTelemetry exporting
every span over OTLP/HTTP to a sink process that reads and acknowledges each export) and `sampled` (the
same with one trace in ten recorded: OTEL_TRACES_SAMPLER=parentbased_traceidratio, argument 0.1). The
API's own /metrics series are always on. Each turn: 300 warm-up POSTs, POST /v1/jobs throughput from 8
keep-alive clients (jobs wait in the gpu queues, as in bench/throughput.py), the API process's CPU per
submission, then POST → ffmpeg start over tiny jobs run one at a time (as in bench/dispatch.py), then the
drain rate: a burst of tiny jobs (`cache: false`, so each is really encoded) submitted at once and timed until
the real worker has finished the last, in jobs/s end to end. Target: tracing costs ≤ 3 % of the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import bench_stack, demo_media, free_port, make_clip, median, percentile
from bench.dispatch import dispatch_latencies
from bench.throughput import _post_many, process_cpu_seconds
from framefleet.cli.client import ApiClient

SINK = """
import signal, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

received = [0, 0]

class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received[0] += 1
        received[1] += len(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass

def stop(*_):
    print(received[0], received[1], flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
"""


@contextmanager
def otlp_sink() -> Iterator[tuple[str, list[int]]]:
    """A process accepting OTLP/HTTP exports (read, acknowledged, dropped); yields its endpoint and, once
    the block ends, [exports, bytes] it received (so a run shows the spans really went out)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True)
    received: list[int] = []
    try:
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", received
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        received.extend(int(x) for x in out.split()[:2])


# The API in a process of its own, driven in-process through ASGI (no sockets, no event-loop scheduling across
# processes): CPU time of the whole process (the intake's writer thread and the span exporter included) per
# POST /v1/jobs, best of 5 batches, so other load on the machine inflates it least.
IN_PROCESS = """
import asyncio, json, os, sys, time
import httpx
from framefleet.api.app import create_app

async def main():
    app = create_app()
    body = json.loads(os.environ["BENCH_SPEC"])
    headers = {"X-API-Key": os.environ["BENCH_KEY"]}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        async def batch(n):
            for _ in range(n):
                response = await client.post("/v1/jobs", json=body, headers=headers)
                assert response.status_code == 201, response.text
        await batch(200)
        best = None
        for _ in range(5):
            started = time.process_time()
            await batch(int(sys.argv[1]))
            spent = (time.process_time() - started) / int(sys.argv[1]) * 1e6
            best = spent if best is None else min(best, spent)
    app.state.intake.close()
    print(f"{best:.1f}")

asyncio.run(main())
"""


def in_process_us(overrides: dict[str, str], *, key: str, spec: dict[str, Any], posts: int) -> float:
    """Microseconds of API process CPU per submission (see IN_PROCESS)."""
    env = {**os.environ, **overrides, "BENCH_KEY": key, "BENCH_SPEC": json.dumps(spec)}
    env["FRAMEFLEET_LOG_LEVEL"] = "WARNING"
    out = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(posts)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def setups(endpoint: str) -> dict[str, dict[str, str]]:
    off = {f"FRAMEFLEET_{name}_METRICS_PORT": "0" for name in ("WORKER", "BEAT", "WEBHOOKS")}
    return {
        "bare": off,
        "metrics": {},
        "traced": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
        # Head sampling, as a busy deployment would run it: one trace in ten recorded, the rest cost a check.
        "sampled": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
    }


def drain_rate(client: ApiClient, spec: dict[str, Any], jobs: int) -> float:
    """Submit `jobs` copies of `spec` at once, then wait until each has ended; jobs/s from the first POST to
    the last ending (polled every 20 ms, so the figure errs low by at most that). Raises if one fails."""
    started = time.perf_counter()
    pending = {client.submit(spec)["id"] for _ in range(jobs)}
    while pending:
        time.sleep(0.02)
        for job_id in list(pending):
            state = client.get(job_id)["state"]
            if state in ("failed", "canceled"):
                raise RuntimeError(f"job {job_id} ended {state}")
            if state == "succeeded":
                pending.discard(job_id)
    return jobs / (time.perf_counter() - started)


def one_turn(overrides: dict[str, str], *, posts: int, dispatches: int, drained: int) -> dict[str, float]:
    # Admission would refuse gpu jobs on this CPU-only stack (here they only need to wait in their queue), and
    # the per-key rate limit would refuse the load.
    fixed = {"FRAMEFLEET_ADMISSION_CHECK": "false", "FRAMEFLEET_RATE_LIMITS_ENABLED": "false"}
    with bench_stack(**fixed, **overrides) as (stack, settings):
        media = demo_media(settings)
        queued = {
            "input": (media / "x.mp4").as_uri(),
            "outputs": [{"container": "mp4"}],
            "hardware": "gpu",
            "priority": "batch",
        }
        host, port, key = "127.0.0.1", settings.api_port, stack.api_key
        api_pid = stack.children["api"].pid
        assert api_pid is not None
        asyncio.run(_post_many(host, port, key, 300, 8, queued))  # warm-up
        cpu_before = process_cpu_seconds(api_pid)
        rate = asyncio.run(_post_many(host, port, key, posts, 8, queued))
        api_cpu_ms = (process_cpu_seconds(api_pid) - cpu_before) / posts * 1000

        clip = make_clip(media / "bench" / "tiny.mp4", seconds=0.2, size="160x120")
        # Not from the result cache: each tiny job is really encoded.
        tiny = {
            "input": clip.as_uri(),
            "outputs": [{"container": "ts", "video": {"preset": "ultrafast"}}],
            "cache": False,
        }
        with ApiClient(stack.api_url, stack.api_key, timeout=60) as client:
            latencies = [ms for _, ms in dispatch_latencies(client, tiny, jobs=dispatches, warm_up=3)]
            drain = drain_rate(client, tiny, drained)
    return {
        "drain_jobs_per_s": drain,
        "jobs_per_s": rate,
        "api_cpu_ms": api_cpu_ms,
        "dispatch_p50_ms": median(latencies),
        "dispatch_p99_ms": percentile(latencies, 99),
    }


def api_cpu_part(endpoint: str, rounds: int, posts: int) -> dict[str, float]:
    """API CPU per submission, in-process, tracing off / on / sampled 1 in 10, in turns; medians in µs."""
    plan = {
        "off": {},
        "traced": setups(endpoint)["traced"],
        "sampled": setups(endpoint)["sampled"],
    }
    found: dict[str, list[float]] = {}
    with bench_stack(FRAMEFLEET_ADMISSION_CHECK="false", FRAMEFLEET_RATE_LIMITS_ENABLED="false") as (
        stack,
        settings,
    ):
        spec = {
            "input": (demo_media(settings) / "x.mp4").as_uri(),
            "outputs": [{"container": "mp4"}],
            "hardware": "gpu",
            "priority": "batch",
        }
        for _ in range(rounds):
            for name, overrides in plan.items():
                found.setdefault(name, []).append(
                    in_process_us(overrides, key=stack.api_key, spec=spec, posts=posts)
                )
    medians = {name: statistics.median(values) for name, values in found.items()}
    print(
        f"API CPU per POST /v1/jobs, in-process (median of {rounds} turns, best of 5 x {posts} each): "
        + ", ".join(f"{name} {value:.0f} us" for name, value in medians.items())
        + f"; tracing {medians['traced'] / medians['off'] - 1:+.1%}, "
        f"sampled 1 in 10 {medians['sampled'] / medians['off'] - 1:+.1%} (target <= 3 %)",
        flush=True,
    )
    return medians


def main(
    rounds: int = 3, posts: int = 2000, dispatches: int = 40, cpu_rounds: int = 3, drained: int = 30
) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {}
    with otlp_sink() as (endpoint, received):
        api_cpu = api_cpu_part(endpoint, cpu_rounds, 300)
        if rounds == 0:
            return {"api_cpu_us": api_cpu}
        plan = setups(endpoint)
        for turn in range(rounds):
            for name, overrides in plan.items():
                figures = one_turn(overrides, posts=posts, dispatches=dispatches, drained=drained)
                results.setdefault(name, []).append(figures)
                print(
                    f"  round {turn + 1} {name:<8} {figures['jobs_per_s']:6.0f} jobs/s  "
                    f"API CPU {figures['api_cpu_ms']:.2f} ms/job  dispatch p50 "
                    f"{figures['dispatch_p50_ms']:.1f} ms  p99 {figures['dispatch_p99_ms']:.1f} ms  drained "
                    f"{figures['drain_jobs_per_s']:.2f} jobs/s",
                    flush=True,
                )
    exports, size = received or [0, 0]
    summary: dict[str, Any] = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    summary["api_cpu_us"] = api_cpu
    base, metered, traced, sampled = (
        summary["bare"],
        summary["metrics"],
        summary["traced"],
        summary["sampled"],
    )
    summary["metrics_throughput_loss"] = 1 - metered["jobs_per_s"] / base["jobs_per_s"]
    summary["tracing_throughput_loss"] = 1 - traced["jobs_per_s"] / metered["jobs_per_s"]
    summary["sampled_throughput_loss"] = 1 - sampled["jobs_per_s"] / metered["jobs_per_s"]
    summary["tracing_drain_loss"] = 1 - traced["drain_jobs_per_s"] / metered["drain_jobs_per_s"]
    summary["sampled_drain_loss"] = 1 - sampled["drain_jobs_per_s"] / metered["drain_jobs_per_s"]
    # The steadier figures on a shared machine: what tracing adds to the API's own CPU per submission.
    summary["tracing_api_cpu_increase"] = traced["api_cpu_ms"] / metered["api_cpu_ms"] - 1
    summary["sampled_api_cpu_increase"] = sampled["api_cpu_ms"] / metered["api_cpu_ms"] - 1
    print(
        f"observability overhead (median of {rounds} rounds of {posts} POSTs, {dispatches} dispatches): "
        f"metrics servers {summary['metrics_throughput_loss']:+.1%} throughput loss, tracing "
        f"{summary['tracing_throughput_loss']:+.1%}, sampled 1 in 10 "
        f"{summary['sampled_throughput_loss']:+.1%} "
        f"(target <= 3 %); drained end to end {base['drain_jobs_per_s']:.2f} / "
        f"{metered['drain_jobs_per_s']:.2f} / {traced['drain_jobs_per_s']:.2f} / "
        f"{sampled['drain_jobs_per_s']:.2f} jobs/s (bare / metrics / traced / sampled: tracing "
        f"{summary['tracing_drain_loss']:+.1%}, sampled {summary['sampled_drain_loss']:+.1%} loss); "
        f"tracing adds {summary['tracing_api_cpu_increase']:+.1%} to the API's CPU per job, "
        f"sampled {summary['sampled_api_cpu_increase']:+.1%}; API CPU per job "
        f"{base['api_cpu_ms']:.2f} / {metered['api_cpu_ms']:.2f} / {traced['api_cpu_ms']:.2f} / "
        f"{sampled['api_cpu_ms']:.2f} ms; dispatch p50 {base['dispatch_p50_ms']:.1f} / "
        f"{metered['dispatch_p50_ms']:.1f} / {traced['dispatch_p50_ms']:.1f} / "
        f"{sampled['dispatch_p50_ms']:.1f} ms (bare / metrics / traced / sampled); {exports} OTLP exports, "
        f"{size / 1e6:.1f} MB received from the traced stacks"
    )
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "rounds", nargs="?", type=int, default=3, help="turns of the four stack set-ups (0: in-process only)"
    )
    parser.add_argument("--cpu-rounds", type=int, default=3, help="turns of the in-process measurement")
    parser.add_argument("--posts", type=int, default=2000, help="POSTs per throughput measurement")
    parser.add_argument("--dispatches", type=int, default=40, help="tiny jobs per dispatch measurement")
    parser.add_argument("--drained", type=int, default=30, help="tiny jobs per drain measurement")
    args = parser.parse_args()
    main(args.rounds, args.posts, args.dispatches, args.cpu_rounds, args.drained)
