"""`framefleet schedules ...`: a tenant's cron schedules from the operator's shell (the same service as
/v1/schedules)."""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from framefleet.cli.admin import _print, database, handled
from framefleet.cli.jobs import read_spec
from framefleet.config import get_settings
from framefleet.core.spec import JobSpec
from framefleet.db.models import Schedule
from framefleet.tenancy.service import NotFound as TenantNotFound
from framefleet.tenancy.service import find_tenant
from framefleet.workflows import schedules as service


def _tenant_id(session: Any, name: str) -> int:
    tenant = find_tenant(session, name=name)
    if tenant is None:
        raise TenantNotFound(f"no tenant {name!r}")
    return tenant.id


def _wrap(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except service.NotFound as exc:
            raise ValueError(str(exc)) from None
        except service.Invalid as exc:
            raise ValueError(f"{exc.field}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None

    return handled(run)


def _line(view: dict[str, Any]) -> str:
    state = "on " if view["enabled"] else "off"
    where = f"{view['cron']:<16} {view['timezone']:<16}"
    return f"{view['id']:>5}  {state}  {view['name']:<24} {where} next={view['next_run_at']}"


def cmd_list(args: argparse.Namespace) -> int:
    with database() as session:
        rows = [
            service.schedule_view(s)
            for s in service.list_schedules(session, tenant_id=_tenant_id(session, args.tenant))
        ]
    _print(rows, args.json, "\n".join(_line(r) for r in rows) or "no schedules")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    spec = JobSpec.model_validate(read_spec(args.spec))
    with database() as session:
        schedule = service.create_schedule(
            session,
            tenant_id=_tenant_id(session, args.tenant),
            name=args.name,
            cron=args.cron,
            timezone=args.timezone,
            spec=service.spec_document(spec, settings=settings, tenant=args.tenant),
            enabled=not args.disabled,
            catch_up=args.catch_up,
            actor="cli",
        )
        view = service.schedule_view(schedule)
    _print(
        view,
        args.json,
        f"schedule {view['id']} created; next fires: " + ", ".join(map(str, view["upcoming"])),
    )
    return 0


def _get(session: Any, args: argparse.Namespace) -> Schedule:
    return service.get_schedule(session, tenant_id=_tenant_id(session, args.tenant), schedule_id=args.id)


def cmd_get(args: argparse.Namespace) -> int:
    with database() as session:
        view = service.schedule_view(_get(session, args))
    _print(view, args.json, _line(view) + "\nupcoming: " + ", ".join(map(str, view["upcoming"])))
    return 0


def _enable(args: argparse.Namespace, enabled: bool) -> int:
    with database() as session:
        schedule = service.update_schedule(
            session,
            tenant_id=_tenant_id(session, args.tenant),
            schedule_id=args.id,
            changes={"enabled": enabled},
        )
        view = service.schedule_view(schedule)
    _print(view, args.json, _line(view))
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return _enable(args, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _enable(args, False)


def cmd_delete(args: argparse.Namespace) -> int:
    with database() as session:
        service.delete_schedule(session, tenant_id=_tenant_id(session, args.tenant), schedule_id=args.id)
    print(f"schedule {args.id} deleted")
    return 0


def cmd_fires(args: argparse.Namespace) -> int:
    with database() as session:
        rows = [
            service.fire_view(f)
            for f in service.list_fires(
                session, tenant_id=_tenant_id(session, args.tenant), schedule_id=args.id, limit=args.limit
            )
        ]
    text = "\n".join(f"{r['fire_at']}  job={r['job_id']}  {r['error'] or ''}".rstrip() for r in rows)
    _print(rows, args.json, text or "no fires yet")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `schedules`."""
    top = sub.add_parser("schedules", help="a tenant's cron schedules")
    s_sub = top.add_subparsers(dest="schedules_command", metavar="COMMAND", required=True)
    managed = []
    listing = s_sub.add_parser("list", help="list a tenant's schedules and their next fire times")
    listing.set_defaults(handler=_wrap(cmd_list))
    managed.append(listing)
    create = s_sub.add_parser("create", help="a job spec submitted at each time of a cron expression")
    create.add_argument("name")
    create.add_argument("--cron", required=True, help='five fields, e.g. "0 6 * * 1-5"')
    create.add_argument("--timezone", default="UTC", help="IANA name (default UTC)")
    create.add_argument("--spec", required=True, metavar="SPEC.json", help="the job spec (- for stdin)")
    create.add_argument(
        "--catch-up", choices=service.CATCH_UP, default="once", help="a fire missed in an outage"
    )
    create.add_argument("--disabled", action="store_true")
    create.set_defaults(handler=_wrap(cmd_create))
    managed.append(create)
    for name, handler, text in (
        ("get", cmd_get, "a schedule and its next fire times"),
        ("enable", cmd_enable, "fire again from the next cron time"),
        ("disable", cmd_disable, "stop firing"),
        ("delete", cmd_delete, "delete a schedule and its fire log"),
        ("fires", cmd_fires, "a schedule's fires, newest first, with the jobs they made"),
    ):
        parser = s_sub.add_parser(name, help=text)
        parser.add_argument("id", type=int, help="schedule id")
        parser.set_defaults(handler=_wrap(handler))
        managed.append(parser)
    s_sub.choices["fires"].add_argument("--limit", type=int, default=50)
    for parser in managed:
        parser.add_argument("--tenant", required=True, metavar="NAME")
        parser.add_argument("--json", action="store_true", help="print JSON")
