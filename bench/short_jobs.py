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

Wall-clock figures on a shared machine move a lot from run to run, so each round also reports the CPU time
the stack's own processes spent per job (their user + system time, not their ffmpeg children's): the
worker's main process and its pool processes, the API, Redis, and beat + Flower. That figure barely
depends on load.

`python -m bench.short_jobs [jobs per round] [rounds]`
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import bench_stack, demo_media, make_clip, median
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


def main(jobs: int = 60, rounds: int = 3) -> dict[str, Any]:
    overrides = {
        "FRAMEFLEET_WORKER_CONCURRENCY": str(PARALLEL),
        "FRAMEFLEET_WORKER_MAX_TASKS_PER_CHILD": "0",
        "FRAMEFLEET_PROGRESS_DB_INTERVAL": "5",
    }
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
                )
    return result


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
