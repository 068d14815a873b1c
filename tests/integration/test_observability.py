"""A real worker process serves its Prometheus series, and every job records what it consumed and cost."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import services
from tests.conftest import make_clip
from tests.integration.conftest import wait_for_state
from tests.integration.test_worker_jobs import fetch, run_to_end, submit

SPEC_OUTPUT = {
    "name": "main",
    "container": "mp4",
    "video": {"codec": "h264", "height": 120, "preset": "ultrafast"},
    "audio": {"codec": "aac", "bitrate_kbps": 64},
}


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return services.free_port()


@pytest.fixture(scope="module")
def metered_worker(worker_env: dict[str, str], session_dir: Path, metrics_port: int) -> Iterator[Any]:
    env = {
        **worker_env,
        "FRAMEFLEET_WORKER_METRICS_PORT": str(metrics_port),
        "FRAMEFLEET_ENERGY_PRICE_PER_KWH": "0.5",
        "FRAMEFLEET_CPU_HOUR_RATE": "0.04",
        "FRAMEFLEET_COST_CURRENCY": "CHF",
    }
    proc = services.start_worker(env, session_dir / "logs" / "worker-observability.log", name="metered")
    yield proc
    services.stop(proc, timeout=20)


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the reaped children of `pid` as the kernel accounted them (cutime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def pool_process(worker: Any) -> int:
    """The worker's only pool process (concurrency 1): the child of its main process."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_usage_matches_kernel_accounting_and_series_move(
    metered_worker: Any,
    api: Any,
    tenant_key: tuple[str, str],
    ffmpeg: str,
    media_root: Path,
    metrics_port: int,
) -> None:
    tenant, key = tenant_key
    # The pool process publishes its slot when it has started, a moment after the worker says it is ready.
    deadline = time.monotonic() + 20
    before = scrape(metrics_port)
    while not value(before, "framefleet_worker_slots", pool="cpu") and time.monotonic() < deadline:
        time.sleep(0.2)
        before = scrape(metrics_port)
    assert value(before, "framefleet_worker_slots", pool="cpu") == 1
    assert value(before, "framefleet_jobs_started_total", tenant=tenant) == 0
    pid = pool_process(metered_worker)
    measured = []
    # Two jobs of different lengths, one at a time, the kernel's accounting of the pool process's reaped
    # children read around each (the probe runs in-process, so its children are the job's ffmpeg runs).
    for seconds in (1, 8):
        source = make_clip(ffmpeg, media_root / "inputs" / f"obs-{seconds}s.mp4", seconds=seconds)
        kernel_before = children_cpu_seconds(pid)
        job = run_to_end(api, key, {"input": source.as_uri(), "outputs": [SPEC_OUTPUT]})
        kernel = children_cpu_seconds(pid) - kernel_before
        assert job["state"] == "succeeded", job
        measured.append((job, kernel))
    for job, kernel in measured:
        usage = job["usage"]
        assert usage["attempts"] == 1
        assert usage["cpu_seconds"] == pytest.approx(kernel, rel=0.10, abs=0.03), (usage, kernel)
        assert usage["joules_source"] == "estimated"  # no readable RAPL counters here
        assert usage["joules"] == pytest.approx(
            usage["cpu_seconds"] * 12.0, abs=0.012
        )  # rounding of cpu_seconds
        expected = usage["joules"] / 3.6e6 * 0.5 + usage["cpu_seconds"] / 3600 * 0.04
        assert job["cost"] == usage["cost"]
        assert usage["cost"]["currency"] == "CHF"
        assert usage["cost"]["amount"] == pytest.approx(expected, rel=0.02)  # from rounded figures
        assert usage["wall_seconds"] > 0
        assert usage["gpu_seconds"] == 0 and usage["gpu_joules"] == 0  # a CPU worker's jobs
    assert measured[1][0]["usage"]["cpu_seconds"] > measured[0][0]["usage"]["cpu_seconds"]

    missing = submit(
        api, key, {"input": (media_root / "inputs" / "nope.mp4").as_uri(), "outputs": [SPEC_OUTPUT]}
    )
    missing = wait_for_state(lambda: fetch(api, key, missing["id"]), {"failed"})

    after = scrape(metrics_port)
    assert value(after, "framefleet_jobs_started_total", tenant=tenant, priority="normal", pool="cpu") == 3
    assert value(after, "framefleet_jobs_finished_total", tenant=tenant, outcome="succeeded") == 2
    assert value(after, "framefleet_jobs_finished_total", tenant=tenant, outcome="failed") == 1
    failures = value(after, "framefleet_job_failures_total", failure_class=missing["failure_class"])
    assert failures > value(before, "framefleet_job_failures_total", failure_class=missing["failure_class"])
    for name, labels, moved in (
        ("framefleet_job_queue_wait_seconds_count", {"priority": "normal"}, 3),
        ("framefleet_job_run_seconds_count", {"outcome": "succeeded"}, 2),
        ("framefleet_encode_frames_per_second_count", {"codec": "h264", "resolution": "sd"}, 2),
        ("framefleet_encode_speed_ratio_count", {"codec": "h264", "resolution": "sd"}, 2),
    ):
        assert value(after, name, **labels) - value(before, name, **labels) == moved, name
    assert value(after, "framefleet_job_input_bytes_total") > value(
        before, "framefleet_job_input_bytes_total"
    )
    assert value(after, "framefleet_job_output_bytes_total") > value(
        before, "framefleet_job_output_bytes_total"
    )
    cpu = sum(job["usage"]["cpu_seconds"] for job, _ in measured)
    assert value(after, "framefleet_job_cpu_seconds_total", tenant=tenant) == pytest.approx(cpu, abs=0.01)
    assert value(after, "framefleet_job_energy_joules_total", tenant=tenant, source="estimated") > 0
    assert value(after, "framefleet_job_gpu_seconds_total", tenant=tenant, pool="cpu") == 0
    assert value(after, "framefleet_job_cost_total", tenant=tenant, currency="CHF") > 0
    assert value(after, "framefleet_worker_busy_slots", pool="cpu") == 0
    assert not any("job" in dict(labels) or "job_id" in dict(labels) for _, labels in after)


def test_a_split_jobs_chunks_are_timed(
    metered_worker: Any,
    api: Any,
    tenant_key: tuple[str, str],
    ffmpeg: str,
    media_root: Path,
    metrics_port: int,
) -> None:
    _, key = tenant_key
    source = make_clip(ffmpeg, media_root / "inputs" / "obs-split.mp4", seconds=2)
    before = scrape(metrics_port)
    spec = {"input": source.as_uri(), "outputs": [SPEC_OUTPUT], "parallel": {"chunks": 2}}
    job = run_to_end(api, key, spec)
    assert job["state"] == "succeeded", job
    after = scrape(metrics_port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    name = "framefleet_chunk_run_seconds_count"
    assert moved(name, pool="cpu", kind="encode", outcome="done") == 2
    assert moved(name, pool="cpu", kind="join", outcome="succeeded") == 1
    assert moved("framefleet_chunk_run_seconds_sum", kind="encode") > 0
