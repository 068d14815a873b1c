"""A running attempt treats Redis as transport: with Redis unreachable (a restart, a Sentinel failover) its
progress events are skipped and its cancel check asks the job row, instead of failing the encode."""

from __future__ import annotations

import sqlalchemy as sa
from redis import Redis

from framefleet.config import get_settings
from framefleet.db.models import Job
from framefleet.db.session import session_scope
from framefleet.redis_client import make_redis
from framefleet.worker.pipeline import ProgressReporter, _Attempt
from tests import services
from tests.factories import queued_job


def unreachable_redis() -> Redis:
    """A client of a port where nothing listens: every command fails at once with ConnectionError."""
    return make_redis(f"redis://127.0.0.1:{services.free_port()}/0", socket_connect_timeout=1)


def test_progress_and_cancel_checks_ride_out_an_unreachable_redis(tenant_key: tuple[str, str]) -> None:
    _, key = tenant_key
    job_id = queued_job(key, {"input": "file:///in.mp4", "outputs": [{"name": "a", "container": "mp4"}]})
    settings = get_settings()
    client = unreachable_redis()
    reporter = ProgressReporter(job_id, 1, client, settings)
    reporter.report(40.0, None, "encode", force=True)  # no ConnectionError reaches the encode

    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        attempt = _Attempt(job, settings, client, 1, None)  # type: ignore[arg-type]  # no storage used
    assert attempt.canceled() is False
    with session_scope() as session:
        session.execute(sa.update(Job).where(Job.id == job_id).values(cancel_requested=True))
    assert attempt.canceled() is True  # the row answers while the flag cannot be read
