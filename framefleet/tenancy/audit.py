"""The audit log: who did what, to what, with what outcome. Rows are only ever inserted by the application.

Rows are removed only by `framefleet audit prune --before DATE` (`prune`), the documented retention
command, which records itself in a row of its own.

Admin actions write their row in the same transaction as the change (`record`), so a change is never left
unrecorded. Other state-changing requests (job submission, cancel, refusals) are recorded by the API's audit
middleware through `AuditWriter`, which inserts them in groups from one thread so a burst of submissions
costs a few inserts, not one per request.
"""

from __future__ import annotations

import base64
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.db.models import AuditEvent, utcnow
from framefleet.db.session import session_scope
from framefleet.keys import Principal
from framefleet.logging import get_logger

log = get_logger(__name__)

MAX_PAGE = 500


@dataclass(frozen=True)
class Actor:
    """Who acts: a key (from its principal) or the operator's shell, and where the request came from."""

    actor: str
    key_id: int | None = None
    key_prefix: str | None = None
    tenant_id: int | None = None
    tenant: str | None = None
    role: str | None = None
    client_ip: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, *, client_ip: str | None, request_id: str | None) -> Actor:
        return cls(
            actor=principal.actor,
            key_id=principal.key_id,
            key_prefix=principal.key_prefix,
            tenant_id=principal.tenant_id,
            tenant=principal.tenant,
            role=principal.role,
            client_ip=client_ip,
            request_id=request_id,
        )


# The operator at a shell on the installation (`framefleet tenants ...`): the whole installation.
CLI = Actor(actor="cli", role="admin")


def event_row(
    actor: Actor,
    *,
    action: str,
    target: str | None,
    outcome: str,
    status: int | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The column values of one audit row."""
    return {
        "at": at or utcnow(),
        "actor": actor.actor,
        "key_id": actor.key_id,
        "key_prefix": actor.key_prefix,
        "tenant_id": actor.tenant_id,
        "tenant": actor.tenant,
        "role": actor.role,
        "action": action,
        "target": target,
        "outcome": outcome,
        "status": status,
        "client_ip": actor.client_ip,
        "request_id": actor.request_id,
        "details": details,
    }


def record(
    session: Session,
    actor: Actor,
    *,
    action: str,
    target: str | None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the caller's transaction (committed with the change it records)."""
    session.execute(
        sa.insert(AuditEvent),
        [event_row(actor, action=action, target=target, outcome=outcome, details=details)],
    )


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: int | None = None
    action: str | None = None
    outcome: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class BadCursor(ValueError):
    pass


def encode_cursor(event_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("a"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc


def list_events(
    session: Session, *, filters: AuditFilter, limit: int = 100, cursor: str | None = None
) -> tuple[list[AuditEvent], str | None]:
    """Audit rows, newest first, and the cursor of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = sa.select(AuditEvent)
    if filters.tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == filters.tenant_id)
    if filters.action is not None:
        query = query.where(AuditEvent.action == filters.action)
    if filters.outcome is not None:
        query = query.where(AuditEvent.outcome == filters.outcome)
    if filters.actor is not None:
        query = query.where(AuditEvent.actor == filters.actor)
    if filters.since is not None:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditEvent.at < filters.until)
    if cursor:
        query = query.where(AuditEvent.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def prune(session: Session, actor: Actor, *, before: datetime, dry_run: bool) -> int:
    """Delete the rows older than `before` (the retention command; nothing else deletes audit rows).

    Returns how many rows are (or, with `dry_run`, would be) deleted. A real prune records itself in a new
    row, in the same transaction, so the log always shows when it was cut and by whom.
    """
    older = AuditEvent.at < before
    count = session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(older)) or 0
    if dry_run:
        return count
    session.execute(sa.delete(AuditEvent).where(older))
    record(
        session,
        actor,
        action="audit.prune",
        target=None,
        details={"before": before.isoformat(), "deleted": count},
    )
    return count


def event_view(event: AuditEvent) -> dict[str, Any]:
    """The public representation of an audit row."""
    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "key_id": event.key_id,
        "key_prefix": event.key_prefix,
        "tenant": event.tenant,
        "role": event.role,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "status": event.status,
        "client_ip": event.client_ip,
        "request_id": event.request_id,
        "details": event.details,
    }


# What the writer's queue holds: a row, a flush marker, or None (stop).
_Item = dict[str, Any] | threading.Event | None


@dataclass
class AuditWriter:
    """One thread per API process inserting queued audit rows, all that wait at a time in one transaction."""

    database_url: str
    # A SimpleQueue: every audited request puts a row, and queue.Queue's locks and task accounting were a
    # visible share of a submission's CPU. flush() queues an Event the writer sets once it got that far.
    _queue: queue.SimpleQueue[_Item] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, row: dict[str, Any]) -> None:
        """Queue a row (from event_row); returns at once."""
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                    self._thread.start()
        self._queue.put(row)

    def flush(self) -> None:
        """Wait until every row queued so far is written."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        reached = threading.Event()
        self._queue.put(reached)
        # A writer closed meanwhile wrote what it had and will not reach the marker.
        while not reached.wait(0.5) and thread.is_alive():
            pass

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < 1000:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([item for item in items if isinstance(item, dict)])
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if None in items:
                return

    def _write(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            with session_scope(self.database_url) as session:
                session.execute(sa.insert(AuditEvent), list(rows))
        except Exception as exc:
            # The request is answered already; the rows are logged so that nothing vanishes silently.
            log.error(
                "audit rows not written", count=len(rows), error=f"{type(exc).__name__}: {exc}", rows=rows
            )
