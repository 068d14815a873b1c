"""Prometheus series of the worker and the beat, and the servers that expose them.

Workers run one job per pool process, so their series use prometheus_client's multiprocess mode: each pool
process writes its values to files in a directory of the worker, and the worker's main process serves the
sum at /metrics. The beat is one process; its queue series are computed by the leader only (a follower
exports none), from a snapshot the maintenance loop refreshes.

Label values are bounded: priority, pool, outcome, failure class, queue, codec and resolution class come
from fixed sets; tenants are named only up to a cap (or an allowlist), the rest count as `_other`. Never
a job id.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

OTHER_TENANT = "_other"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Not registered in the default registry: the worker's is built from the multiprocess files.
_NONE: Any = None
JOBS_STARTED = Counter(
    "framefleet_jobs_started_total",
    "Attempts started (jobs claimed by a worker)",
    ["priority", "pool", "tenant"],
    registry=_NONE,
)
JOBS_FINISHED = Counter(
    "framefleet_jobs_finished_total",
    "Attempts ended, by outcome: succeeded, failed, retrying, canceled, handback, lease",
    ["priority", "pool", "tenant", "outcome"],
    registry=_NONE,
)
JOB_FAILURES = Counter(
    "framefleet_job_failures_total",
    "Failed attempts by failure class",
    ["pool", "failure_class"],
    registry=_NONE,
)
JOB_RETRIES = Counter(
    "framefleet_job_retries_total",
    "Failed attempts that will be retried",
    ["priority", "pool"],
    registry=_NONE,
)
QUEUE_WAIT = Histogram(
    "framefleet_job_queue_wait_seconds",
    "Time from entering the queue to being claimed",
    ["priority", "pool"],
    registry=_NONE,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
RUN_TIME = Histogram(
    "framefleet_job_run_seconds",
    "Wall time of one attempt",
    ["priority", "pool", "outcome"],
    registry=_NONE,
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
CHUNK_RUN_TIME = Histogram(
    "framefleet_chunk_run_seconds",
    "Wall time of one chunk (kind encode) or join (kind join) of a split attempt",
    ["pool", "kind", "outcome"],
    registry=_NONE,
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
ENCODE_FPS = Histogram(
    "framefleet_encode_frames_per_second",
    "Frames encoded per wall second of ffmpeg, per succeeded job",
    ["codec", "resolution"],
    registry=_NONE,
    buckets=(1, 5, 10, 25, 50, 100, 200, 400, 800, 1600),
)
ENCODE_SPEED = Histogram(
    "framefleet_encode_speed_ratio",
    "Media seconds encoded per wall second of ffmpeg (times realtime)",
    ["codec", "resolution"],
    registry=_NONE,
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
BYTES_IN = Counter("framefleet_job_input_bytes_total", "Bytes of inputs fetched", ["pool"], registry=_NONE)
BYTES_OUT = Counter(
    "framefleet_job_output_bytes_total", "Bytes of outputs published", ["pool"], registry=_NONE
)
CPU_SECONDS = Counter(
    "framefleet_job_cpu_seconds_total",
    "CPU seconds of the jobs' ffmpeg processes",
    ["pool", "tenant"],
    registry=_NONE,
)
GPU_SECONDS = Counter(
    "framefleet_job_gpu_seconds_total",
    "Wall seconds of the jobs' GPU encodes",
    ["pool", "tenant"],
    registry=_NONE,
)
ENERGY = Counter(
    "framefleet_job_energy_joules_total",
    "Energy attributed to jobs (CPU and GPU); source is rapl, rapl+nvml, nvml or estimated",
    ["pool", "tenant", "source"],
    registry=_NONE,
)
COST = Counter(
    "framefleet_job_cost_total",
    "Cost of jobs in the configured currency",
    ["pool", "tenant", "currency"],
    registry=_NONE,
)
# livesum: the sum over live pool processes (a dead one's file is dropped by mark_process_dead).
SLOTS = Gauge(
    "framefleet_worker_slots",
    "Job slots (pool processes) of this worker",
    ["pool"],
    registry=_NONE,
    multiprocess_mode="livesum",
)
BUSY = Gauge(
    "framefleet_worker_busy_slots",
    "Slots running a job now",
    ["pool"],
    registry=_NONE,
    multiprocess_mode="livesum",
)


class TenantLabels:
    """Bounds the tenant label: named tenants of the allowlist, else the first `cap` seen, else `_other`."""

    def __init__(self, allow: Iterable[str], cap: int) -> None:
        self.allow = frozenset(allow)
        self.cap = cap
        self.seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, tenant: str) -> str:
        if self.allow:
            return tenant if tenant in self.allow else OTHER_TENANT
        with self._lock:
            if tenant in self.seen:
                return tenant
            if len(self.seen) < self.cap:
                self.seen.add(tenant)
                return tenant
        return OTHER_TENANT


def resolution_class(height: int | None) -> str:
    if not height:
        return "audio"
    for limit, name in ((480, "sd"), (720, "hd"), (1080, "fhd"), (2160, "uhd")):
        if height <= limit:
            return name
    return "8k"


# ---------------------------------------------------------------- worker (multiprocess)


def enable_multiprocess(directory: Path) -> None:
    """Make this process and the pool processes it forks write their values to files in `directory`.

    Call before any series gets a value. prometheus_client chooses its value class when first imported, and
    the worker's CLI imports it before it knows it will fork; choosing again here is what the library does
    itself at import when the environment variable is set.
    """
    shutil.rmtree(directory, ignore_errors=True)  # values of an earlier run are not this run's
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()


class WorkDirSpace(Collector):
    """Free and total bytes of the file system holding the worker's work dir, read at each scrape (statvfs:
    what an unprivileged process may still write, as ffmpeg will)."""

    def __init__(self, work_root: Path, pool: str) -> None:
        self.work_root = work_root
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = os.statvfs(self.work_root)
        except OSError:
            return  # not created yet or unmounted: no figure rather than a wrong one
        free = GaugeMetricFamily(
            "framefleet_worker_workdir_free_bytes",
            "Bytes free for the worker in its work dir",
            labels=["pool"],
        )
        free.add_metric([self.pool], stats.f_bavail * stats.f_frsize)
        yield free
        size = GaugeMetricFamily(
            "framefleet_worker_workdir_size_bytes", "Size of the file system of the work dir", labels=["pool"]
        )
        size.add_metric([self.pool], stats.f_blocks * stats.f_frsize)
        yield size


def serve_worker_metrics(port: int, host: str, *, work_root: Path, pool: str) -> None:
    """Serve the sum of all pool processes' values and the work dir's space (daemon thread of the calling
    process)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(WorkDirSpace(work_root, pool))
    start_http_server(port, addr=host, registry=registry)


def pool_process_exited(pid: int) -> None:
    """Drop a dead pool process's live gauges (its counters stay counted)."""
    if os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid)


# ---------------------------------------------------------------- webhook sender

# One process (`framefleet webhooks worker`, its sending threads share these).
WEBHOOK_REGISTRY = CollectorRegistry()
WEBHOOK_OUTCOMES = ("succeeded", "retrying", "failed")
WEBHOOK_DELIVERIES = Counter(
    "framefleet_webhook_deliveries_total",
    "Webhook delivery attempts by outcome: succeeded, retrying (tried again later), failed (given up)",
    ["outcome"],
    registry=WEBHOOK_REGISTRY,
)
WEBHOOK_SECONDS = Histogram(
    "framefleet_webhook_delivery_seconds",
    "Time of one webhook POST",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=WEBHOOK_REGISTRY,
)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(_outcome)  # every outcome exported from the start, at 0


def serve_webhook_metrics(port: int, host: str) -> None:
    start_http_server(port, addr=host, registry=WEBHOOK_REGISTRY)


# ---------------------------------------------------------------- beat (leader only)


WEBHOOK_STATUSES = ("ok", "failing")


class QueueSnapshot(Collector):
    """The fleet series the leader last computed from the database (queues, jobs past their run-time limit,
    webhook endpoints' health); a follower holds an empty snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: dict[str, int] = {}
        self._oldest: dict[str, float] = {}
        self._over_limit: dict[str, int] = {}
        self._endpoints: dict[str, int] = {}
        self._leader = 0

    def update(
        self,
        depth: dict[str, int],
        oldest: dict[str, float],
        *,
        over_limit: dict[str, int],
        endpoints: dict[str, int],
    ) -> None:
        with self._lock:
            self._depth, self._oldest, self._leader = dict(depth), dict(oldest), 1
            self._over_limit, self._endpoints = dict(over_limit), dict(endpoints)

    def clear(self) -> None:
        with self._lock:
            self._depth, self._oldest, self._over_limit, self._endpoints, self._leader = {}, {}, {}, {}, 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            depth, oldest, leader = self._depth, self._oldest, self._leader
            over_limit, endpoints = self._over_limit, self._endpoints
        leading = GaugeMetricFamily("framefleet_beat_leader", "1 while this beat holds the maintenance lead")
        leading.add_metric([], leader)
        yield leading
        if not leader:
            return
        for name, doc, label, levels in (
            ("framefleet_queue_depth", "Jobs queued, per queue (<pool>.<priority>)", "queue", depth),
            (
                "framefleet_queue_oldest_job_age_seconds",
                "Age of the oldest queued job, per queue (0: empty)",
                "queue",
                oldest,
            ),
            (
                "framefleet_jobs_running_over_limit",
                "Jobs running longer than their run-time limit, per pool",
                "pool",
                over_limit,
            ),
            (
                "framefleet_webhook_endpoints",
                "Enabled webhook endpoints by health status",
                "status",
                endpoints,
            ),
        ):
            family = GaugeMetricFamily(name, doc, labels=[label])
            for key, value in sorted(levels.items()):
                family.add_metric([key], value)
            yield family


QUEUES = QueueSnapshot()


def serve_beat_metrics(port: int, host: str) -> None:
    registry = CollectorRegistry()
    registry.register(QUEUES)
    start_http_server(port, addr=host, registry=registry)
