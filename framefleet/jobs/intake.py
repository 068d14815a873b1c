"""Group commit of submissions: one writer thread per API process.

A request hands its new job row to the intake and waits. The writer takes every row waiting at that
moment, inserts them in one transaction, publishes them in one Redis round trip and wakes their requests.
Under load, N submissions cost one commit and one broker round trip instead of N of each, and on SQLite the
API's writes no longer queue behind one another's file lock. Nothing is held back to fill a group, so a lone
request waits for nothing extra. A request is answered only after its row is committed: a job the API
acknowledged is never lost, and one whose publish failed is published again by the reconciler.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from framefleet.core.states import JobState
from framefleet.db.models import Job
from framefleet.db.session import session_factory
from framefleet.jobs import service
from framefleet.jobs.dispatch import dispatch_many
from framefleet.logging import get_logger
from framefleet.observability import tracing
from framefleet.redis_client import get_redis
from framefleet.scheduling import fairshare
from framefleet.webhooks import feed

if TYPE_CHECKING:
    from celery import Celery

log = get_logger(__name__)

# Enough to absorb a burst from many clients; small enough that one transaction stays short.
MAX_GROUP = 100


@dataclass
class _Submission:
    row: dict[str, Any]
    done: Future[Job] = field(default_factory=Future)


class Intake:
    """The writer of one API process. enqueue() may be called from any thread."""

    def __init__(
        self, database_url: str, celery: Celery, *, max_group: int = MAX_GROUP, fair_share_in_flight: int = 0
    ) -> None:
        self.database_url = database_url
        self.fair_share_in_flight = fair_share_in_flight
        self.celery = celery
        self.max_group = max_group
        self._waiting: queue.SimpleQueue[_Submission | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def enqueue(self, row: dict[str, Any]) -> Future[Job]:
        """Hand over one new job (a row from service.new_job_row) to be inserted and published.

        The future holds the job once committed, or the database's error: IntegrityError when the row's
        idempotency key is already taken.
        """
        submission = _Submission(row)
        intake_span = tracing.start("job.intake", attributes={"framefleet.job_id": row["id"]})
        # The job keeps its trace: the writer thread's publish, the worker and the webhook deliveries continue
        # it from the row, whatever thread or process they run in (a trace the sampler dropped included, so
        # that its later spans are dropped too rather than start traces of their own).
        row["trace_context"] = tracing.traceparent(intake_span)
        if intake_span is not None:
            submission.done.add_done_callback(lambda _: intake_span.end())
        with self._lock:
            if self._thread is None:
                # Started on first use (and again after close), so an app whose lifespan never ran works too.
                self._thread = threading.Thread(target=self._run, name="framefleet-intake", daemon=True)
                self._thread.start()
        self._waiting.put(submission)
        return submission.done

    @property
    def waiting(self) -> int:
        """Submissions waiting for the writer."""
        return self._waiting.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is waiting, then stop the writer (a later submission starts a new one)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._waiting.put(None)
            thread.join(timeout)

    def write_group(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        atomic: bool = False,
        prelude: Callable[[Session], None] | None = None,
    ) -> list[Job | Exception]:
        """Insert rows in one transaction and publish them in one round trip; each row's outcome in order:
        its job, or the error that kept it out (IntegrityError for a reused idempotency key). `atomic`
        (an atomic batch): a reused key keeps every row out instead of only its own. `prelude` writes what
        the jobs belong to (a workflow run) first, in the same transaction; it implies `atomic`."""
        atomic = atomic or prelude is not None
        # Copies: fair share may make a row `pending`, and a retried row must be judged afresh.
        rows = [dict(row) for row in rows]
        try:
            with session_factory(self.database_url)() as session:
                if prelude is not None:
                    prelude(session)
                fairshare.assign(session, rows, in_flight=self.fair_share_in_flight)
                service.insert_jobs(session, rows)
                session.commit()
        except IntegrityError as exc:
            if len(rows) == 1 or atomic:
                return [exc] * len(rows)
            # One of them reuses an idempotency key: write each alone so that the others still land.
            return [self.write_group([row])[0] for row in rows]
        except Exception as exc:
            log.error("could not record submissions", count=len(rows), error=f"{type(exc).__name__}: {exc}")
            return [exc] * len(rows)
        # Committed: a failed publish only delays these jobs (the reconciler publishes them again).
        jobs = [Job(**row) for row in rows]
        # Jobs beyond their tenant's fair share wait in the database; a claim or the beat publishes them.
        dispatch_many([job for job in jobs if job.state == JobState.queued.value], celery=self.celery)
        try:
            feed.note_created(get_redis(self.celery.conf.framefleet_redis_url), [job.id for job in jobs])
        except redis.RedisError as exc:
            # The jobs are in; only their `job.created` webhooks are missing.
            log.warning(
                "job.created not fed to webhooks", count=len(jobs), error=f"{type(exc).__name__}: {exc}"
            )
        return list(jobs)

    def _run(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < self.max_group:
                try:
                    more = self._waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._settle(group)
            if stop:
                return

    def _settle(self, group: Sequence[_Submission]) -> None:
        """Write a group and hand each waiting request its outcome; never leave one waiting."""
        try:
            outcomes = self.write_group([submission.row for submission in group])
        except Exception as exc:
            outcomes = [exc] * len(group)
        for submission, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, Exception):
                submission.done.set_exception(outcome)
            else:
                submission.done.set_result(outcome)
