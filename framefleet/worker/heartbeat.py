"""Worker liveness: every job-running process publishes a heartbeat, and holds its jobs only while it can.

Each pool process is one worker, named `<node>:<pid>`. Every `heartbeat_interval_seconds` it sets a Redis
key with a TTL (`framefleet:worker:<id>`, read by GET /v1/workers and routing) and updates its row in the
`workers` table (the history, and what the reaper trusts: a Redis restart wipes the keys of live workers).

The heartbeat is also a lease. A worker that could not write its row for `fence_after_seconds` (TTL minus
one interval) assumes the reaper is about to hand its job to someone else and stops its ffmpeg first
(media/runner.py asks `lease_ok` every poll), so a partitioned worker never runs beside its replacement.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from framefleet.config import Settings
from framefleet.db.models import Worker, utcnow
from framefleet.db.session import session_scope
from framefleet.logging import get_logger
from framefleet.redis_client import get_redis

log = get_logger("framefleet.worker.heartbeat")
KEY_PREFIX = "framefleet:worker:"


def worker_key(worker_id: str) -> str:
    """Redis key holding a live worker's latest heartbeat."""
    return f"{KEY_PREFIX}{worker_id}"


def worker_id_for(node: str | None, pid: int) -> str:
    """`<node>:<pid>`: one id per job-running process (a replaced pool process is a new worker)."""
    return f"{node or socket.gethostname()}:{pid}"


class Heartbeat:
    """The heartbeat of this process; `start()` publishes the first beat before any job is taken."""

    def __init__(self, *, node: str, pool: str, capabilities: dict[str, Any], settings: Settings) -> None:
        self.node = node
        self.pool = pool
        self.pid = os.getpid()
        self.id = worker_id_for(node, self.pid)
        self.host = socket.gethostname()
        self.capabilities = capabilities
        self.settings = settings
        self.started_at = utcnow()
        self.current_job: str | None = None
        self.current_attempt: int | None = None
        self.jobs_done = 0
        self._last_ok = time.monotonic()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- lease

    def lease_ok(self) -> bool:
        """Whether this process may keep running jobs: its row was renewed within the fence period."""
        return time.monotonic() - self._last_ok < self.settings.fence_after_seconds

    def seconds_since_renewal(self) -> float:
        return time.monotonic() - self._last_ok

    # -- current job

    def set_current(self, job_id: str, attempt: int, *, beat_now: bool = True) -> None:
        """Advertise the job this process runs (at the next beat, brought forward unless not `beat_now`).

        The worker's claim writes the row in its own transaction (`record_current`) and passes
        `beat_now=False`: a forced beat per job was a database write and a Redis write that a short job
        paid for while it prepared its ffmpeg.
        """
        with self._lock:
            self.current_job, self.current_attempt = job_id, attempt
        if beat_now:
            self._wake.set()

    def clear_current(self, *, done: bool = True) -> None:
        """Stop advertising the job (at the next regular beat: nothing waits on a worker turning idle).

        Not brought forward, unlike set_current: for short jobs that beat was a database write per job,
        contending with the next claim. The reaper only looks at running jobs, and this is called after
        the ending is recorded; should that have failed, the job is still taken back once the row says
        idle, one interval later at most.
        """
        with self._lock:
            self.current_job = self.current_attempt = None
            self.jobs_done += int(done)

    # -- beating

    def document(self) -> dict[str, Any]:
        """What the Redis key holds."""
        with self._lock:
            job, attempt, done = self.current_job, self.current_attempt, self.jobs_done
        return {
            "id": self.id,
            "node": self.node,
            "host": self.host,
            "pid": self.pid,
            "pool": self.pool,
            "current_job": job,
            "current_attempt": attempt,
            "jobs_done": done,
            "started_at": self.started_at.isoformat(),
            "last_heartbeat": utcnow().isoformat(),
            "capabilities": self.capabilities,
        }

    def beat(self) -> bool:
        """Publish one heartbeat; True when the database row (the lease) was renewed."""
        doc = self.document()
        try:
            ttl_ms = int(self.settings.heartbeat_ttl_seconds * 1000)
            get_redis(self.settings.redis_url).set(
                worker_key(self.id), json.dumps(doc, separators=(",", ":")), px=ttl_ms
            )
        except Exception as exc:  # Redis down: the database row still carries the lease
            log.warning("heartbeat not published to redis", error=f"{type(exc).__name__}: {exc}")
        try:
            self._write_row(doc)
        except Exception as exc:
            log.warning(
                "heartbeat not recorded",
                error=f"{type(exc).__name__}: {exc}",
                unrenewed_seconds=round(self.seconds_since_renewal(), 1),
            )
            return False
        self._last_ok = time.monotonic()
        return True

    def _write_row(self, doc: dict[str, Any]) -> None:
        now = utcnow()
        values = {
            "last_heartbeat": now,
            "current_job": doc["current_job"],
            "current_attempt": doc["current_attempt"],
            "jobs_done": doc["jobs_done"],
            "stopped_at": None,
        }
        with session_scope(self.settings.database_url) as session:
            result = session.execute(sa.update(Worker).where(Worker.id == self.id).values(**values))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                session.add(
                    Worker(
                        id=self.id,
                        node=self.node,
                        host=self.host,
                        pid=self.pid,
                        pool=self.pool,
                        capabilities=self.capabilities,
                        started_at=self.started_at,
                        **values,
                    )
                )

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.heartbeat_interval_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.beat()

    def start(self) -> None:
        """First beat now (so the worker is known before it claims anything), then one per interval."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="framefleet-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and record a clean exit."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        mark_stopped(self.id)


def record_current(session: Any, worker_id: str, job_id: str, attempt: int) -> None:
    """Write in `session` (the claim's transaction) that `worker_id` runs `job_id`'s `attempt`.

    The row then says so from the very commit that makes the job running. The lease (last_heartbeat)
    stays the beat's to renew.
    """
    session.execute(
        sa.update(Worker).where(Worker.id == worker_id).values(current_job=job_id, current_attempt=attempt)
    )


def mark_stopped(worker_id: str) -> None:
    """Record that a worker process ended (cleanly or not): the reaper need not wait for its TTL."""
    try:
        with session_scope() as session:
            session.execute(
                sa.update(Worker)
                .where(Worker.id == worker_id, Worker.stopped_at.is_(None))
                .values(stopped_at=utcnow(), current_job=None, current_attempt=None)
            )
        get_redis().delete(worker_key(worker_id))
    except Exception as exc:
        log.warning("could not record worker exit", worker=worker_id, error=f"{type(exc).__name__}: {exc}")


def live_since(settings: Settings) -> Any:
    """The oldest heartbeat time that still counts as alive."""
    return utcnow() - timedelta(seconds=settings.heartbeat_ttl_seconds)


_current: Heartbeat | None = None


def current() -> Heartbeat | None:
    """This process's heartbeat, if it runs jobs."""
    return _current


def install(heartbeat: Heartbeat | None) -> None:
    global _current
    _current = heartbeat
