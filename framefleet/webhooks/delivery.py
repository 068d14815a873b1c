"""The webhook worker: turns feed entries into durable events and deliveries (fan-out), and sends them.

Fan-out runs in one process at a time (a Redis lease), so each job's events get their sequence numbers
in the order they happened. The deliveries table is the source of truth for sending: any number of
sender threads and processes claim due rows by compare-and-set; a row is due when its time has come and
no earlier event of the same job to the same target is still waiting (per-job order), and a claimed row
whose sender died is claimed again when its lease ends (at-least-once; the event id is the idempotency key).
"""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from framefleet.config import Settings
from framefleet.db.models import Job, Tenant, WebhookDelivery, WebhookEndpoint, WebhookEvent, utcnow
from framefleet.db.session import session_factory
from framefleet.jobs.service import job_view, outputs_of
from framefleet.logging import get_logger
from framefleet.observability import metrics, tracing
from framefleet.redis_client import get_redis
from framefleet.storage.base import StorageDenied, StorageError
from framefleet.storage.http import guarded_client
from framefleet.webhooks import feed, service, signing

log = get_logger(__name__)

LEADER_KEY = "framefleet:webhooks:fanout-leader"
EXCERPT_CHARS = 512
_USER_AGENT = "FrameFleet-webhooks/1"
_WAITING = ("pending", "sending")


def backoff_seconds(attempts: int, *, base: float, cap: float, jitter: float) -> float:
    """Wait after the `attempts`-th failed attempt: base doubling up to cap, stretched by up to 25 %
    (`jitter` in [0, 1)) so receivers coming back are not hit by every sender at once, never shortened,
    so the whole schedule lasts at least as long as the un-jittered one."""
    return min(cap, base * 2 ** max(0, attempts - 1)) * (1 + 0.25 * jitter)


def schedule_floor_seconds(*, base: float, cap: float, max_attempts: int) -> float:
    """The least time between a delivery's first and last attempt."""
    return sum(backoff_seconds(n, base=base, cap=cap, jitter=0) for n in range(1, max_attempts))


def _event_time(source: str) -> datetime:
    # A feed entry's id starts with the Redis clock in milliseconds when it was written.
    return datetime.fromtimestamp(int(source.split("-", 1)[0]) / 1000, UTC)


def fan_out(
    session: Session, *, source: str, job_id: str, event_type: str, detail: str, secret_key: str
) -> WebhookEvent | None:
    """Record one feed entry as an event with its deliveries (committed), or nothing when no target
    wants it, the job is gone, or the entry (for a progress milestone: that milestone of the job) was
    recorded before."""
    key = source
    if event_type == "job.progress":
        if not detail.isdigit():
            return None
        key = feed.milestone_source(job_id, int(detail))
    job = session.get(Job, job_id)
    if job is None:
        return None
    endpoints = [
        e
        for e in session.scalars(
            sa.select(WebhookEndpoint).where(
                WebhookEndpoint.tenant_id == job.tenant_id,
                WebhookEndpoint.kind == service.ENDPOINT,
                WebhookEndpoint.enabled.is_(True),
            )
        )
        if event_type in (e.event_types or feed.DEFAULT_EVENT_TYPES)
    ]
    notify = [n["url"] for n in (job.spec.get("notify") or []) if event_type in n.get("events", ())]
    if not endpoints and not notify:
        return None  # the common case, decided before the look-up below
    if session.scalar(sa.select(WebhookEvent.id).where(WebhookEvent.source == key)) is not None:
        return None
    last = session.scalar(sa.select(sa.func.max(WebhookEvent.sequence)).where(WebhookEvent.job_id == job_id))
    sequence = (last or 0) + 1
    tenant = session.get(Tenant, job.tenant_id)
    event_id = str(uuid.uuid4())
    view = job_view(job, outputs_of(session, job_id))
    body: dict[str, Any] = {
        "id": event_id,
        "type": event_type,
        "created_at": _event_time(source).isoformat(),
        "sequence": sequence,
        "tenant": tenant.name if tenant else None,
        "job": view,
    }
    if event_type == "job.output_ready":
        body["output"] = detail
    if event_type == "job.progress":
        body["milestone"] = int(detail)
    event = WebhookEvent(
        id=event_id,
        tenant_id=job.tenant_id,
        job_id=job_id,
        sequence=sequence,
        type=event_type,
        at=_event_time(source),
        source=key,
        body=json.loads(json.dumps(body, default=str)),
    )
    session.add(event)
    session.flush()
    targets: list[tuple[int | None, str, str]] = [(e.id, e.url, f"endpoint:{e.id}") for e in endpoints]
    if notify:
        service.notify_secret_row(session, tenant_id=job.tenant_id, secret_key=secret_key)
        targets += [(None, url, f"notify:{url}"[:255]) for url in dict.fromkeys(notify)]
    for endpoint_id, url, target in targets:
        session.add(
            WebhookDelivery(
                event_id=event_id,
                tenant_id=job.tenant_id,
                endpoint_id=endpoint_id,
                url=url,
                target=target,
                job_id=job_id,
                sequence=sequence,
            )
        )
    session.commit()
    return event


def claim_due(session: Session, *, limit: int, lease_seconds: float) -> list[int]:
    """Take up to `limit` due deliveries for this sender (committed); their ids."""
    now = utcnow()
    earlier = aliased(WebhookDelivery)
    due = sa.or_(
        sa.and_(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now),
        sa.and_(WebhookDelivery.state == "sending", WebhookDelivery.lease_until < now),
    )
    blocked = (
        sa.select(earlier.id)
        .where(
            earlier.job_id == WebhookDelivery.job_id,
            earlier.target == WebhookDelivery.target,
            earlier.sequence < WebhookDelivery.sequence,
            earlier.state.in_(_WAITING),
        )
        .exists()
    )
    candidates = session.scalars(
        sa.select(WebhookDelivery.id)
        .where(due, ~blocked)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    ).all()
    taken: list[int] = []
    for delivery_id in candidates:
        # Compare-and-set: another sender that took the row first makes this match nothing.
        result = session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, due)
            .values(state="sending", lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            taken.append(delivery_id)
    session.commit()
    return taken


def _excerpt(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= EXCERPT_CHARS * 4:
            break
    return data.decode("utf-8", "replace")[:EXCERPT_CHARS]


def send_one(
    session: Session, delivery_id: int, *, settings: Settings, ssl_context: ssl.SSLContext | None = None
) -> str:
    """POST one claimed delivery and record the outcome; the delivery's new state. A sender passes its
    one `ssl_context`: loading the trust store anew took about 13 ms of CPU per delivery."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.state != "sending":
        return "gone"
    if not tracing.enabled():
        return _send(session, delivery, settings=settings, ssl_context=ssl_context)
    # Sent long after the job's events, by another process: the job row keeps the trace to join.
    stored = session.scalar(sa.select(Job.trace_context).where(Job.id == delivery.job_id))
    with tracing.span(
        "webhook.deliver",
        kind=tracing.SpanKind.CLIENT,
        parent=tracing.context_of(stored),
        attributes={"framefleet.job_id": delivery.job_id, "framefleet.delivery_id": delivery.id},
    ) as span:
        state = _send(session, delivery, settings=settings, ssl_context=ssl_context)
        if span is not None:
            span.set_attribute("framefleet.delivery_state", state)
            if state not in ("succeeded", "gone"):
                tracing.mark_error(span, f"delivery {state}")
        return state


def _send(
    session: Session, delivery: WebhookDelivery, *, settings: Settings, ssl_context: ssl.SSLContext | None
) -> str:
    delivery_id = delivery.id
    event = session.get(WebhookEvent, delivery.event_id)
    if delivery.endpoint_id is not None:
        signer = session.get(WebhookEndpoint, delivery.endpoint_id)
    else:
        signer = service.notify_secret_row(
            session, tenant_id=delivery.tenant_id, secret_key=settings.secret_key
        )
    if event is None or signer is None:
        session.delete(delivery)
        session.commit()
        return "gone"
    now = utcnow()
    body = json.dumps(event.body, separators=(",", ":")).encode()
    timestamp = int(time.time())
    keys = service.signing_secrets(signer, secret_key=settings.secret_key, now=now)
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.header_value(keys, timestamp, body),
        "FrameFleet-Event-Id": event.id,
        "FrameFleet-Event-Type": event.type,
        "Idempotency-Key": event.id,
    }
    # The receiver may continue the job's trace (W3C traceparent); nothing is added when tracing is off.
    tracing.inject(headers)
    status: int | None = None
    excerpt: str | None = None
    error: str | None = None
    permanent = False
    started = time.perf_counter()
    try:
        with guarded_client(
            allow_private=settings.webhook_allow_private,
            deadline=settings.webhook_timeout_seconds,
            ssl_context=ssl_context,
            user_agent=_USER_AGENT,
        ) as client:
            request = client.build_request("POST", delivery.url, content=body, headers=headers)
            response = client.send(request, stream=True)
            try:
                status = response.status_code
                excerpt = _excerpt(response)
            finally:
                response.close()
    except StorageDenied as exc:
        error, permanent = str(exc), True  # an internal address stays internal: no retry
    except (StorageError, httpx.HTTPError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    accepted = status is not None and 200 <= status < 300
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "response_status": status,
        "response_excerpt": excerpt,
        "latency_ms": latency_ms,
        "error": error if error else (None if accepted else f"HTTP {status}"),
        "lease_until": None,
        "updated_at": utcnow(),
    }
    if accepted:
        values.update(state="succeeded", delivered_at=utcnow())
    elif permanent or attempts >= settings.webhook_max_attempts:
        values.update(state="failed")
    else:
        wait = backoff_seconds(
            attempts,
            base=settings.webhook_retry_base_seconds,
            cap=settings.webhook_retry_cap_seconds,
            jitter=random.random(),
        )
        values.update(state="pending", next_attempt_at=utcnow() + timedelta(seconds=wait))
    # Only the claim's holder records: a sender whose lease ran out meanwhile changes nothing.
    result = session.execute(
        sa.update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "sending")
        .values(**values)
    )
    recorded = result.rowcount == 1  # type: ignore[attr-defined]
    if recorded and delivery.endpoint_id is not None:
        _mark_endpoint(session, delivery.endpoint_id, values["state"])
    session.commit()
    if recorded:
        outcome = "retrying" if values["state"] == "pending" else str(values["state"])
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        metrics.WEBHOOK_SECONDS.observe(latency_ms / 1000)
    return str(values["state"])


def _mark_endpoint(session: Session, endpoint_id: int, state: str) -> None:
    """`failing` from a given-up delivery until the next accepted one."""
    if state == "failed":
        session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status != "failing")
            .values(status="failing", failing_since=utcnow())
        )
    elif state == "succeeded":
        session.execute(
            sa.update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.status != "ok")
            .values(status="ok", failing_since=None)
        )


class WebhookWorker:
    """One `framefleet webhooks worker` process: a fan-out thread (when it holds the lease) and senders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: redis.Redis = get_redis(settings.redis_url)
        self.sessions: sessionmaker[Session] = session_factory(settings.database_url)
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._name = uuid.uuid4().hex
        # Shared by the sending threads (an SSLContext is safe to share); made once, not per delivery.
        self._ssl_context = httpx.create_ssl_context(trust_env=False)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._fan_out_loop, name="webhooks-fanout", daemon=True)]
        self._threads += [
            threading.Thread(target=self._send_loop, name=f"webhooks-send-{n}", daemon=True)
            for n in range(self.settings.webhook_senders)
        ]
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        # Hand the fan-out lease over at once rather than when it expires.
        if self.redis.get(LEADER_KEY) == self._name:
            self.redis.delete(LEADER_KEY)

    def _lead(self) -> bool:
        """Take or keep the fan-out lease (a Redis key with a TTL, renewed while leading)."""
        ttl_ms = 10_000
        if self.redis.set(LEADER_KEY, self._name, nx=True, px=ttl_ms):
            return True
        if self.redis.get(LEADER_KEY) == self._name:
            self.redis.pexpire(LEADER_KEY, ttl_ms)
            return True
        return False

    def _fan_out_loop(self) -> None:
        try:
            self.redis.xgroup_create(feed.FEED_KEY, feed.GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        pending_first = True
        while not self.stop.is_set():
            try:
                if not self._lead():
                    self.stop.wait(2.0)
                    pending_first = True
                    continue
                # One consumer name for every leader: a new leader first re-reads what the last one took
                # but never acknowledged (fan-out is idempotent per entry).
                start = "0" if pending_first else ">"
                answer: Any = self.redis.xreadgroup(
                    feed.GROUP,
                    "fanout",
                    {feed.FEED_KEY: start},
                    count=100,
                    block=None if pending_first else 1000,
                )
                entries = answer[0][1] if answer else []
                pending_first = bool(entries) and start == "0"
                if self.fan_out_entries(entries):
                    self._wake.set()
            except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
                log.warning("webhook fan-out failed; retrying", error=f"{type(exc).__name__}: {exc}")
                self.stop.wait(1.0)

    def fan_out_entries(self, entries: list[tuple[str, dict[str, str]]]) -> bool:
        """Record a batch of feed entries, then acknowledge them in one round trip; True when any of them
        made a delivery.

        Only then are the senders woken: most job events have no target (no endpoint, no notify URL), and
        waking every sender to find nothing due cost a transaction per sender per entry, several per job.
        Retries coming due are found by the senders' own poll. Acknowledging after the batch keeps the
        guarantee: an entry is acknowledged only once recorded, and recording again is a no-op.
        """
        made = False
        for entry_id, fields in entries:
            made = self._fan_out_entry(entry_id, fields) or made
        if entries:
            self.redis.xack(feed.FEED_KEY, feed.GROUP, *(entry_id for entry_id, _ in entries))
        return made

    def _fan_out_entry(self, entry_id: str, fields: dict[str, str]) -> bool:
        for _ in range(3):
            with self.sessions() as session:
                try:
                    event = fan_out(
                        session,
                        source=entry_id,
                        job_id=fields.get("job", ""),
                        event_type=fields.get("type", ""),
                        detail=fields.get("detail", ""),
                        secret_key=self.settings.secret_key,
                    )
                    return event is not None
                except IntegrityError:
                    # Another writer took this sequence number (a leader change mid-entry): read again.
                    session.rollback()
        return False

    def _send_loop(self) -> None:
        while not self.stop.is_set():
            try:
                with self.sessions() as session:
                    taken = claim_due(session, limit=1, lease_seconds=self.settings.webhook_lease_seconds)
                    for delivery_id in taken:
                        send_one(session, delivery_id, settings=self.settings, ssl_context=self._ssl_context)
                if taken:
                    continue
            except sa.exc.SQLAlchemyError as exc:
                log.warning("webhook sending failed; retrying", error=f"{type(exc).__name__}: {exc}")
            # Idle: wake on new events from this process's fan-out, or poll for retries coming due.
            self._wake.wait(0.5)
            self._wake.clear()
