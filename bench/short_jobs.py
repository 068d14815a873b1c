"""Short jobs: drain rate through FrameFleet ÷ the same ffmpeg argument list run directly, two at a time.

For each clip (the soak's 0.2 s 160x120 and a 2 s 480p one, both → one MPEG-TS output, x264 ultrafast +
AAC) the rounds alternate in one run: a batch of jobs drained by one worker with two pool processes, then
the planner's own argument list for that job run directly with two processes at a time, and again. Each
side's figure is the median over rounds; the target ratio is ≥ 0.8.

The time outside ffmpeg is broken down per job from what the service records anyway (nothing is added to
production code): database timestamps (started_at is set inside the claim, finished_at inside the
ending's transaction) and the job's event stream, whose ids are Redis's millisecond clock on this machine.

    between jobs   previous job's `done` on the same pool process → this claim (ack, broker fetch, task start)
    claim          claim's started_at → `state: running` event (CAS + history row + commit + announce)
    prepare        `running` → `progress` 0 % (work folder, fetch, probe, plan; the event is sent just
                   before ffmpeg is spawned)
    ffmpeg         `progress` 0 % → `progress` 100 % (the encode, as the worker saw it)
    finish         `progress` 100 % → `done` (process exit, result probe, ownership check, put with fsyncs,
                   output rows, ending transition + commit, the ending's events)

Then a traced pass (one more stack, the worker's own OpenTelemetry spans sent to a local OTLP receiver,
`tests/integration/otlp_receiver.py`) splits each job finer, from the spans the worker records anyway
(job.run and its job.claim, job.fetch, job.probe, ffmpeg.encode, job.package, job.publish_outputs,
job.record; job.publish in the API) and the gaps between them (see TRACED_STEPS). Tracing adds its own
small cost, so that pass is not part of the ratio.

Wall-clock figures on a shared machine move a lot from run to run, so each round also reports the CPU time
the stack's own processes spent per job (their user + system time, not their ffmpeg children's): the
worker's main process and its pool processes, the API, Redis, and beat + Flower. That figure barely
depends on load.

`python -m bench.short_jobs [jobs per round] [rounds] [--traced N] [--database-url postgresql://…]`
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import bench_stack, demo_media, free_port, make_clip, median
from framefleet.config import Settings
from framefleet.core.spec import JobSpec
from framefleet.media.capabilities import detect_capabilities
from framefleet.media.command import plan_job
from framefleet.media.ffmpeg import ffmpeg_path
from framefleet.media.probe import probe

CLIPS = {"tiny 0.2s 160x120": (0.2, "160x120"), "480p 2s": (2.0, "854x480")}
OUTPUT = {"container": "ts", "video": {"preset": "ultrafast"}}
PARALLEL = 2
TARGET_RATIO = 0.8
STEPS = ("between jobs", "claim", "prepare", "ffmpeg", "finish")
# The traced pass: (step, from mark, to mark); a mark is `<span>.start` or `<span>.end` within one job's
# trace (the worker's spans, and the API's job.publish). The time between jobs is left to the untraced
# rounds: with tracing on, the pool processes' span exports fall in that gap and swell it.
TRACED_STEPS = (
    ("queue: publish -> task starts (the backlog, in a drain)", "job.publish.end", "job.run.start"),
    ("claim: CAS, history, fair-share release, commit, publish released", "job.claim.start", "job.claim.end"),
    ("running event, work folder, storage profiles", "job.claim.end", "job.fetch.start"),
    ("fetch (file:// in place)", "job.fetch.start", "job.fetch.end"),
    ("cancel check, cache key", "job.fetch.end", "job.probe.start"),
    ("probe (PyAV, one frame decoded)", "job.probe.start", "job.probe.end"),
    ("plan, folders, progress event", "job.probe.end", "ffmpeg.encode.start"),
    ("ffmpeg: spawn to reaped", "ffmpeg.encode.start", "ffmpeg.encode.end"),
    ("results: output probe, rows", "ffmpeg.encode.end", "job.package.end"),
    ("cancel check, ownership check", "job.package.end", "job.publish_outputs.start"),
    ("publish: put, fsyncs, rename", "job.publish_outputs.start", "job.publish_outputs.end"),
    ("work folder removal, usage and cost", "job.publish_outputs.end", "job.record.start"),
    ("ending: CAS, rows, usage, ledger, commit, events", "job.record.start", "job.record.end"),
    ("after: heartbeat, metrics", "job.record.end", "job.run.end"),
)


def direct_argv(spec: dict[str, Any], clip: Path, outdir: Path, settings: Settings) -> list[str]:
    """The argument list the worker's planner builds for `spec` (as bench/e2e.py does), into `outdir`."""
    plan = plan_job(
        JobSpec.model_validate(spec),
        probe(clip),
        detect_capabilities(ffmpeg_path()),
        clip,
        outdir,
        threads=settings.ffmpeg_threads,
    )
    plan.prepare()
    return [ffmpeg_path(), *plan.argv]


def drain_direct(argvs: list[list[str]], jobs: int) -> float:
    """Run `jobs` encodes, PARALLEL at a time (slot i always writes its own folder); jobs/s."""

    def slot(index: int) -> None:
        for _ in range(index, jobs, PARALLEL):
            subprocess.run(argvs[index], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    started = time.perf_counter()
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(slot, range(PARALLEL)))
    return jobs / (time.perf_counter() - started)


def drain_stack(http: httpx.Client, spec: dict[str, Any], jobs: int, db: str) -> tuple[float, list[str]]:
    """Submit `jobs` copies of `spec` and wait for their ends; jobs/s from the first claim to the last end."""
    from framefleet.db.models import Job
    from framefleet.db.session import session_scope

    ids = []
    for _ in range(jobs):
        response = http.post("/v1/jobs", json=spec)
        response.raise_for_status()
        ids.append(response.json()["id"])
    while True:
        time.sleep(0.25)
        with session_scope(db) as session:
            rows = session.execute(
                sa.select(Job.state, Job.started_at, Job.finished_at).where(Job.id.in_(ids))
            ).all()
        if all(r.state in ("succeeded", "failed", "canceled") for r in rows):
            break
    bad = [r.state for r in rows if r.state != "succeeded"]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not succeed: {bad[:5]}")
    first = min(r.started_at for r in rows)
    last = max(r.finished_at for r in rows)
    # From the first claim, not the first POST: submission is the API's cost, measured by other benches.
    return jobs / (last - first).total_seconds(), ids


def breakdown(ids: list[str], db: str, redis_url: str) -> dict[str, list[float]]:
    """Per-step milliseconds for each job (see the module docstring)."""
    import redis

    from framefleet import events
    from framefleet.db.models import Job
    from framefleet.db.session import session_scope

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with session_scope(db) as session:
        rows = session.execute(
            sa.select(Job.id, Job.worker, Job.started_at, Job.finished_at).where(Job.id.in_(ids))
        ).all()
    marks: dict[str, dict[str, float]] = {}
    for row in rows:
        at: dict[str, float] = {"claim": row.started_at.timestamp() * 1000}
        for event in events.history(client, row.id):
            ms = float(event.id.split("-")[0])
            if event.type == "state" and event.data["state"] == "running":
                at.setdefault("running", ms)
            elif event.type == "progress" and event.data.get("phase") == "encode":
                if (event.data.get("percent") or 0) == 0:
                    at.setdefault("ffmpeg", ms)
                if (event.data.get("percent") or 0) >= 100:
                    at.setdefault("encoded", ms)
            elif event.type == "done":
                at.setdefault("done", ms)
        marks[row.id] = at
    client.close()
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    pairs = [
        ("claim", "claim", "running"),
        ("prepare", "running", "ffmpeg"),
        ("ffmpeg", "ffmpeg", "encoded"),
        ("finish", "encoded", "done"),
    ]
    for at in marks.values():
        for step, begin, end in pairs:
            if begin in at and end in at:
                steps[step].append(at[end] - at[begin])
    by_worker: dict[str, list[dict[str, float]]] = {}
    for row in rows:
        by_worker.setdefault(row.worker, []).append(marks[row.id])
    for jobs in by_worker.values():
        jobs.sort(key=lambda at: at["claim"])
        for previous, current in itertools.pairwise(jobs):
            if "done" in previous:
                steps["between jobs"].append(current["claim"] - previous["done"])
    return steps


def cpu_ms(pid: int) -> float:
    """User + system CPU time of one process (not of its children), in ms; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def stack_processes(stack: Any) -> dict[str, list[int]]:
    """The stack's processes by role; the worker's pool processes with its main process."""
    found: dict[str, list[int]] = {}
    for name, child in stack.children.items():
        if child.pid is None:
            continue
        role = "beat+flower" if name in ("beat", "flower") else name
        if name == "worker":
            role = "worker main"
            for task in Path(f"/proc/{child.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    found.setdefault("worker pool", []).extend(
                        int(c) for c in (task / "children").read_text().split()
                    )
        found.setdefault(role, []).append(child.pid)
    return found


def cpu_by_role(processes: dict[str, list[int]]) -> dict[str, float]:
    return {role: sum(cpu_ms(pid) for pid in pids) for role, pids in processes.items()}


def job_marks(spans: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each job's marks (ms since the epoch) from its spans: `<name>.start` and `<name>.end`."""
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    marks: dict[str, dict[str, float]] = {}
    for trace in traces.values():
        run = next((s for s in trace if s["name"] == "job.run"), None)
        if run is None:
            continue
        at: dict[str, float] = {}
        for span in sorted(trace, key=lambda s: s["start"]):
            if span["name"] == "job.publish" and span["end"] > run["start"]:
                continue  # a fair-share release published by this job's claim, not this job's own message
            at[f"{span['name']}.start"] = span["start"] / 1e6  # the last of a name wins: the latest publish
            at[f"{span['name']}.end"] = span["end"] / 1e6
        marks[str(run["attributes"].get("framefleet.job_id"))] = at
    return marks


@contextlib.contextmanager
def traced_stack(
    overrides: dict[str, str], tmp: Path
) -> Iterator[tuple[Any, Settings, Callable[[list[str]], dict[str, dict[str, float]]]]]:
    """A bench stack exporting its spans to a local OTLP receiver, and a function returning the marks of
    the given jobs once their spans have arrived (the batch exporters send every 200 ms)."""
    port = free_port()
    sink = tmp / "spans.jsonl"
    sink.touch()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.otlp_receiver", str(port), str(sink)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    traced = {
        **overrides,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_TRACES_SAMPLER": "always_on",
    }

    def marks_of(ids: list[str]) -> dict[str, dict[str, float]]:
        deadline = time.monotonic() + 30
        while True:
            time.sleep(0.5)
            marks = job_marks([json.loads(line) for line in sink.read_text().splitlines() if line])
            if all(i in marks and "job.run.end" in marks[i] for i in ids) or time.monotonic() > deadline:
                return {i: marks[i] for i in ids if i in marks}

    try:
        with bench_stack(**traced) as (stack, settings):
            yield stack, settings, marks_of
    finally:
        receiver.terminate()
        receiver.wait(10)


def step_medians(
    marks: dict[str, dict[str, float]], steps: Iterable[tuple[str, str, str]]
) -> dict[str, float]:
    """Median ms of each (step, from mark, to mark) over the jobs that have both marks."""
    medians = {}
    for step, begin, end in steps:
        values = [at[end] - at[begin] for at in marks.values() if begin in at and end in at]
        if values:
            medians[step] = round(median(values), 2)
    return medians


def traced_steps(
    spec_for: Any, jobs: int, overrides: dict[str, str], tmp: Path
) -> dict[str, dict[str, float]]:
    """The traced pass over each clip: median ms of every step in TRACED_STEPS, per clip label."""
    result: dict[str, dict[str, float]] = {}
    with traced_stack(overrides, tmp) as (stack, settings, marks_of):
        headers = {"X-API-Key": stack.api_key}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as http:
            for label, spec in spec_for(settings):
                drain_stack(http, spec, 4, settings.database_url)  # warm up
                _, ids = drain_stack(http, spec, jobs, settings.database_url)
                result[label] = step_medians(marks_of(ids), TRACED_STEPS)
    return result


def main(jobs: int = 60, rounds: int = 3, traced: int = 0, database_url: str | None = None) -> dict[str, Any]:
    overrides = {
        "FRAMEFLEET_WORKER_CONCURRENCY": str(PARALLEL),
        "FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD": "0",
        "FRAMEFLEET_PROGRESS_DB_INTERVAL": "5",
    }
    if database_url:
        overrides["FRAMEFLEET_DATABASE_URL"] = database_url
    result = ratios(jobs, rounds, overrides) if rounds > 0 else {}
    if traced:

        def specs(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
            made = []
            for label, (seconds, size) in CLIPS.items():
                name = size.replace("x", "_")
                clip = make_clip(demo_media(settings) / "short" / f"{name}.mp4", seconds=seconds, size=size)
                made.append((label, {"input": clip.as_uri(), "outputs": [OUTPUT], "cache": False}))
            return made

        with tempfile.TemporaryDirectory() as tmp:
            steps = traced_steps(specs, traced, overrides, Path(tmp))
        for label, medians in steps.items():
            result.setdefault(label, {})["traced_step_median_ms"] = medians
            outside = sum(v for step, v in medians.items() if not step.startswith(("ffmpeg", "queue")))
            print(f"traced, {label}, {traced} jobs, median ms per step (tracing on):")
            for step, value in medians.items():
                print(f"  {value:8.2f}  {step}")
            print(
                f"  {outside:8.2f}  outside ffmpeg in the worker (the steps above but the queue and ffmpeg)"
            )
    return result


def ratios(jobs: int, rounds: int, overrides: dict[str, str]) -> dict[str, Any]:
    """The measured rounds: drain through the stack vs direct, per clip (see the module docstring)."""
    result: dict[str, Any] = {}
    with bench_stack(**overrides) as (stack, settings), tempfile.TemporaryDirectory() as tmp:
        headers = {"X-API-Key": stack.api_key}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as http:
            for label, (seconds, size) in CLIPS.items():
                name = size.replace("x", "_")
                clip = make_clip(demo_media(settings) / "short" / f"{name}.mp4", seconds=seconds, size=size)
                spec = {"input": clip.as_uri(), "outputs": [OUTPUT], "cache": False}
                argvs = [
                    direct_argv(spec, clip, Path(tmp) / f"{name}-{i}", settings) for i in range(PARALLEL)
                ]
                drain_stack(http, spec, 4, settings.database_url)  # warm both pool processes
                drain_direct(argvs, 4)
                stack_rates, direct_rates, steps = [], [], {s: [] for s in STEPS}
                processes = stack_processes(stack)
                cpu: dict[str, list[float]] = {}
                for _ in range(rounds):
                    before = cpu_by_role(processes)
                    rate, ids = drain_stack(http, spec, jobs, settings.database_url)
                    after = cpu_by_role(processes)
                    for role in after:
                        cpu.setdefault(role, []).append((after[role] - before[role]) / jobs)
                    stack_rates.append(rate)
                    direct_rates.append(drain_direct(argvs, jobs))
                    for step, values in breakdown(ids, settings.database_url, settings.redis_url).items():
                        steps[step] += values
                ratio = median(stack_rates) / median(direct_rates)
                step_medians = {s: round(median(v), 1) for s, v in steps.items() if v}
                outside = sum(v for s, v in step_medians.items() if s != "ffmpeg")
                result[label] = {
                    "framefleet_jobs_per_s": round(median(stack_rates), 2),
                    "direct_jobs_per_s": round(median(direct_rates), 2),
                    "ratio": round(ratio, 3),
                    "rounds": {"framefleet": stack_rates, "direct": direct_rates},
                    "step_median_ms": step_medians,
                    "outside_ffmpeg_ms": round(outside, 1),
                    "cpu_ms_per_job": {role: round(median(v), 2) for role, v in cpu.items()},
                }
                print(
                    f"short jobs, {label}: framefleet {median(stack_rates):.1f} jobs/s, direct ffmpeg "
                    f"{median(direct_rates):.1f} jobs/s, ratio {ratio:.2f} (target >= {TARGET_RATIO}; "
                    f"medians of {rounds} rounds of {jobs} jobs, {PARALLEL} at a time)"
                )
                print(
                    "  per job, median ms: "
                    + ", ".join(f"{s} {v:.1f}" for s, v in step_medians.items())
                    + f"; outside ffmpeg {outside:.1f}"
                )
                print(
                    "  CPU ms per job (not ffmpeg's): "
                    + ", ".join(f"{role} {v:.2f}" for role, v in result[label]["cpu_ms_per_job"].items())
                    + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=int, nargs="?", default=60, help="jobs per round")
    parser.add_argument("rounds", type=int, nargs="?", default=3)
    parser.add_argument("--traced", type=int, default=0, help="jobs per clip in the traced pass (0: none)")
    parser.add_argument("--database-url", help="a PostgreSQL URL instead of the embedded SQLite")
    args = parser.parse_args()
    main(args.jobs, args.rounds, args.traced, args.database_url)
