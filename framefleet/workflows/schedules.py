"""Cron schedules: a tenant's job spec submitted at each time a cron expression names, in a timezone.

The beat leader alone fires them (maintenance.py). A fire is one transaction: the schedule's `next_run_at`
moves forward by compare-and-set, the fire is recorded in a row unique per (schedule, fire time), and the
job is inserted; the job is published after the commit (a lost publish is the reconciler's to redo). A beat
that took over after a failover finds the fire recorded or the schedule already moved, and makes no
second job. Fires missed while no beat ran collapse into one, run on recovery (`catch_up: once`, the
default) or dropped (`catch_up: skip`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from framefleet.core.spec import JobSpec
from framefleet.db.models import Job, Schedule, ScheduleFire, Tenant, utcnow
from framefleet.db.session import session_scope
from framefleet.jobs import service as jobs
from framefleet.jobs.dispatch import dispatch
from framefleet.jobs.locations import location_problem
from framefleet.keys import Principal
from framefleet.logging import get_logger
from framefleet.storage.namespace import namespace_for
from framefleet.workflows import batch

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.config import Settings

log = get_logger(__name__)

CATCH_UP = ("once", "skip")
MAX_SCHEDULES_PER_TENANT = 100
UPCOMING = 5
BATCH = 100


class NotFound(Exception):
    pass


class Invalid(ValueError):
    """A schedule field that cannot be used; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------- pure


def check_cron(expression: str) -> str:
    """A standard five-field cron expression (minute hour day month weekday), or Invalid."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise Invalid(
            "cron", f"{expression!r} is not a five-field cron expression (minute hour day month weekday)"
        )
    return expression


def zone(name: str) -> ZoneInfo:
    """The IANA timezone called `name`, or Invalid."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("timezone", f"unknown timezone {name!r} (an IANA name such as Europe/Paris)") from None


def next_after(cron: str, timezone: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, in UTC; wall-clock times follow the zone's DST changes."""
    local = after.astimezone(zone(timezone))
    fire: datetime = croniter(cron, local).get_next(datetime)
    return fire.astimezone(UTC)


def upcoming(cron: str, timezone: str, after: datetime, count: int = UPCOMING) -> list[datetime]:
    """The next `count` fire times after `after`, in UTC."""
    times: list[datetime] = []
    for _ in range(count):
        after = next_after(cron, timezone, after)
        times.append(after)
    return times


def latest_due(cron: str, timezone: str, next_run_at: datetime, now: datetime) -> datetime:
    """The last fire time in [next_run_at, now] (next_run_at itself when no later one has come)."""
    local = (now + timedelta(microseconds=1)).astimezone(zone(timezone))
    previous: datetime = croniter(cron, local).get_prev(datetime)
    return max(next_run_at, previous.astimezone(UTC))


@dataclass(frozen=True)
class Plan:
    """What one look at a schedule decides: the fire to run now (None: nothing, or a skipped miss), and
    the schedule's next fire time."""

    fire_at: datetime | None
    next_run_at: datetime
    missed: bool = False


def plan(
    *, cron: str, timezone: str, next_run_at: datetime, now: datetime, catch_up: str, late_seconds: float
) -> Plan:
    """Decide a schedule's fire at `now` (pure; tests give it any clock)."""
    if next_run_at > now:
        return Plan(None, next_run_at)
    fire = latest_due(cron, timezone, next_run_at, now)
    following = next_after(cron, timezone, now)
    missed = (now - fire).total_seconds() > late_seconds
    if missed and catch_up == "skip":
        return Plan(None, following, missed=True)
    return Plan(fire, following, missed=missed)


# ---------------------------------------------------------------- the tenant's schedules


def spec_document(spec: JobSpec, *, settings: Settings, tenant: str) -> dict[str, Any]:
    """The job spec a schedule stores, after the checks a submission makes that the model cannot:
    Invalid (field `spec.<...>`) for parents or a URI outside the tenant's storage."""
    if spec.depends_on:
        # Parents are jobs that exist now; each fire would wait for the same ones again.
        raise Invalid("spec.depends_on", "a scheduled job cannot depend on other jobs")
    try:
        namespace = namespace_for(settings, tenant)
    except ValueError as exc:
        raise Invalid("spec", f"tenant {tenant!r} has no storage area: {exc}") from None
    refused = location_problem(spec, namespace)
    if refused is not None:
        raise Invalid(f"spec.{refused[0]}", refused[1])
    return spec.model_dump(mode="json")


def template_call(
    session: Session,
    *,
    tenant_id: int,
    tenant: str,
    name: str,
    version: int | None,
    params: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """The template call a schedule stores, checked now as a submission of it would be (parameters bound,
    the resolved spec valid and inside the tenant's storage): batch.SubmissionInvalid naming
    `template.<...>`, or Invalid. Fires resolve it again (the latest version unless `version` pins one)."""
    call = {"template": name, "version": version, "params": params}
    try:
        spec, _ = batch.Resolver(session, tenant_id).resolve(dict(call))
    except batch.SubmissionInvalid as exc:
        raise batch.SubmissionInvalid(batch.prefixed(exc.errors, "template")) from None
    spec_document(spec, settings=settings, tenant=tenant)
    return call


def create_schedule(
    session: Session,
    *,
    tenant_id: int,
    name: str,
    cron: str,
    timezone: str,
    spec: dict[str, Any],
    enabled: bool,
    catch_up: str,
    actor: str | None,
    now: datetime | None = None,
) -> Schedule:
    """A new schedule (`spec`: a validated job spec document); Invalid names the field at fault."""
    cron = check_cron(cron)
    zone(timezone)
    count = session.scalar(
        sa.select(sa.func.count()).select_from(Schedule).where(Schedule.tenant_id == tenant_id)
    )
    if (count or 0) >= MAX_SCHEDULES_PER_TENANT:
        raise Invalid("name", f"a tenant has at most {MAX_SCHEDULES_PER_TENANT} schedules")
    if session.scalar(sa.select(Schedule.id).where(Schedule.tenant_id == tenant_id, Schedule.name == name)):
        raise Invalid("name", f"this tenant already has a schedule {name!r}")
    now = now or utcnow()
    schedule = Schedule(
        tenant_id=tenant_id,
        name=name,
        cron=cron,
        timezone=timezone,
        spec=spec,
        enabled=enabled,
        catch_up=catch_up,
        next_run_at=next_after(cron, timezone, now) if enabled else None,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    session.commit()
    return schedule


def list_schedules(session: Session, *, tenant_id: int) -> list[Schedule]:
    return list(
        session.scalars(sa.select(Schedule).where(Schedule.tenant_id == tenant_id).order_by(Schedule.id))
    )


def get_schedule(session: Session, *, tenant_id: int, schedule_id: int) -> Schedule:
    """The tenant's schedule; another tenant's is reported as missing."""
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or schedule.tenant_id != tenant_id:
        raise NotFound(f"no schedule {schedule_id}")
    return schedule


def update_schedule(
    session: Session,
    *,
    tenant_id: int,
    schedule_id: int,
    changes: dict[str, Any],
    now: datetime | None = None,
) -> Schedule:
    """Change cron, timezone, spec, enabled or catch_up; the next fire is computed afresh from now."""
    schedule = get_schedule(session, tenant_id=tenant_id, schedule_id=schedule_id)
    if "cron" in changes:
        schedule.cron = check_cron(changes["cron"])
    if "timezone" in changes:
        zone(changes["timezone"])
        schedule.timezone = changes["timezone"]
    for name in ("spec", "enabled", "catch_up"):
        if name in changes:
            setattr(schedule, name, changes[name])
    now = now or utcnow()
    # A schedule enabled again starts from now: what it would have fired while off is not "missed".
    schedule.next_run_at = next_after(schedule.cron, schedule.timezone, now) if schedule.enabled else None
    schedule.updated_at = now
    session.commit()
    return schedule


def delete_schedule(session: Session, *, tenant_id: int, schedule_id: int) -> None:
    """Remove a schedule and its fire log (the jobs it made stay)."""
    schedule = get_schedule(session, tenant_id=tenant_id, schedule_id=schedule_id)
    session.execute(sa.delete(ScheduleFire).where(ScheduleFire.schedule_id == schedule.id))
    session.delete(schedule)
    session.commit()


def list_fires(session: Session, *, tenant_id: int, schedule_id: int, limit: int = 50) -> list[ScheduleFire]:
    """The schedule's fires, newest first."""
    get_schedule(session, tenant_id=tenant_id, schedule_id=schedule_id)
    query = sa.select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id)
    return list(session.scalars(query.order_by(ScheduleFire.id.desc()).limit(max(1, min(limit, 100)))))


def schedule_view(schedule: Schedule, *, now: datetime | None = None) -> dict[str, Any]:
    """The public representation, with the next fire times."""
    start = schedule.next_run_at
    later = upcoming(schedule.cron, schedule.timezone, start, UPCOMING - 1) if start is not None else []
    return {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
        "catch_up": schedule.catch_up,
        **_submits(schedule.spec),
        "next_run_at": start,
        "upcoming": [start, *later] if start is not None else [],
        "last_fire_at": schedule.last_fire_at,
        "created_by": schedule.created_by,
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


def _submits(stored: dict[str, Any]) -> dict[str, Any]:
    """A view's `spec`, or its `template` (name, version, params) for a schedule made from a template."""
    if "template" in stored:
        template = {"name": stored["template"], "version": stored.get("version"), "params": stored["params"]}
        return {"spec": None, "template": template}
    return {"spec": stored, "template": None}


def fire_view(fire: ScheduleFire) -> dict[str, Any]:
    return {"id": fire.id, "fire_at": fire.fire_at, "at": fire.at, "job_id": fire.job_id, "error": fire.error}


# ---------------------------------------------------------------- the beat's task


def fire_due(settings: Settings, *, celery: Celery | None = None, now: datetime | None = None) -> list[str]:
    """Fire every enabled schedule whose time has come; the ids of the jobs made."""
    now = now or utcnow()
    with session_scope() as session:
        due = list(
            session.scalars(
                sa.select(Schedule.id)
                .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
                .order_by(Schedule.next_run_at)
                .limit(BATCH)
            )
        )
    made = []
    for schedule_id in due:
        job = _fire(schedule_id, settings, now)
        if job is not None:
            dispatch(job, celery=celery)
            made.append(job.id)
    return made


def _fire(schedule_id: int, settings: Settings, now: datetime) -> Job | None:
    """Record one schedule's due fire and insert its job, all or nothing; the job to publish, if any."""
    with session_scope() as session:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None or not schedule.enabled or schedule.next_run_at is None:
            return None
        before = schedule.next_run_at
        decided = plan(
            cron=schedule.cron,
            timezone=schedule.timezone,
            next_run_at=before,
            now=now,
            catch_up=schedule.catch_up,
            late_seconds=settings.schedule_late_seconds,
        )
        if not _move(session, schedule_id, before, decided, now, schedule.last_fire_at):
            session.rollback()
            return None
        if decided.fire_at is None:
            session.commit()
            if decided.missed:
                log.info("missed schedule fire skipped", schedule_id=schedule_id, due=before.isoformat())
            return None
        row, error = _job_row(session, schedule)
        session.add(
            ScheduleFire(
                schedule_id=schedule_id,
                fire_at=decided.fire_at,
                at=now,
                job_id=row["id"] if row else None,
                error=error,
            )
        )
        try:
            session.flush()
        except IntegrityError:
            # Recorded already (a beat that led before us fired it and this schedule's time was set back):
            # no second job, but the schedule still moves on.
            session.rollback()
            _move(session, schedule_id, before, decided, now, schedule.last_fire_at)
            session.commit()
            return None
        if row is not None:
            jobs.insert_jobs(session, [row])
        session.commit()
    if row is None:
        log.warning("schedule fire made no job", schedule_id=schedule_id, error=error)
        return None
    log.info("schedule fired", schedule_id=schedule_id, fire_at=decided.fire_at.isoformat(), job_id=row["id"])
    return Job(**row)


def _move(
    session: Session, schedule_id: int, before: datetime, decided: Plan, now: datetime, last: datetime | None
) -> bool:
    """Compare-and-set the schedule's next fire: a second beat that read the same next_run_at changes
    nothing (False)."""
    moved = session.execute(
        sa.update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_run_at == before)
        .values(next_run_at=decided.next_run_at, last_fire_at=decided.fire_at or last, updated_at=now)
    ).rowcount  # type: ignore[attr-defined]
    return bool(moved == 1)


def _job_row(session: Session, schedule: Schedule) -> tuple[dict[str, Any] | None, str | None]:
    """The new job's row, or why none can be made (a spec the current release no longer accepts)."""
    tenant = session.get(Tenant, schedule.tenant_id)
    assert tenant is not None  # the schedule is deleted with its tenant
    template = None
    if "template" in schedule.spec:
        # Resolved at each fire, as a template call submitted now would be (version None: the latest).
        resolver = batch.Resolver(session, tenant.id)
        try:
            spec, document = resolver.resolve(dict(schedule.spec))
            template = resolver.origin(schedule.spec)
        except batch.SubmissionInvalid as exc:
            first = exc.errors[0]
            return None, f"the schedule's template no longer resolves: {first['field']}: {first['message']}"
    else:
        try:
            spec = JobSpec.model_validate(schedule.spec)
        except ValueError as exc:
            return None, f"the schedule's spec is no longer valid: {exc}"
        document = spec.model_dump(mode="json")
    # Jobs of a schedule are the tenant's own; a suspended tenant's job is held at its claim like any other.
    principal = Principal(tenant_id=tenant.id, tenant=tenant.name, key_id=0, role="member")
    return jobs.new_job_row(principal=principal, spec=spec, document=document, template=template), None
