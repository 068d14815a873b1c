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
from framefleet.workflows import batch, templates
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
        except batch.SubmissionInvalid as exc:
            raise ValueError(f"{exc.errors[0]['field']}: {exc.errors[0]['message']}") from None
        except templates.NotFound as exc:
            raise ValueError(f"template: {exc}") from None
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


def _param(text: str) -> tuple[str, str]:
    """One `--param name=value`."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    return name, value


def _to_submit(session: Any, args: argparse.Namespace, tenant_id: int) -> dict[str, Any]:
    """What the schedule submits at each fire: the spec file's document, or the template call (each
    `--param` typed as the template declares it, then checked as the API checks it)."""
    settings = get_settings()
    if args.template is None and (args.version is not None or args.param):
        raise ValueError("--version and --param go with --template")
    if args.spec is not None:
        spec = JobSpec.model_validate(read_spec(args.spec))
        return service.spec_document(spec, settings=settings, tenant=args.tenant)
    declared = templates.parameters_of(
        templates.find(session, tenant_id=tenant_id, name=args.template, version=args.version)
    )
    params = {
        name: templates.from_text(declared[name].type, value) if name in declared else value
        for name, value in args.param
    }
    return service.template_call(
        session,
        tenant_id=tenant_id,
        tenant=args.tenant,
        name=args.template,
        version=args.version,
        params=params,
        settings=settings,
    )


def cmd_create(args: argparse.Namespace) -> int:
    with database() as session:
        tenant_id = _tenant_id(session, args.tenant)
        schedule = service.create_schedule(
            session,
            tenant_id=tenant_id,
            name=args.name,
            cron=args.cron,
            timezone=args.timezone,
            spec=_to_submit(session, args, tenant_id),
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


def cmd_update(args: argparse.Namespace) -> int:
    with database() as session:
        tenant_id = _tenant_id(session, args.tenant)
        changes: dict[str, Any] = {
            name: getattr(args, name)
            for name in ("cron", "timezone", "catch_up")
            if getattr(args, name) is not None
        }
        if args.spec is not None or args.template is not None or args.param or args.version is not None:
            changes["spec"] = _to_submit(session, args, tenant_id)
        if not changes:
            raise ValueError("nothing to change: give --cron, --timezone, --catch-up, --spec or --template")
        schedule = service.update_schedule(session, tenant_id=tenant_id, schedule_id=args.id, changes=changes)
        view = service.schedule_view(schedule)
    _print(view, args.json, _line(view) + "\nupcoming: " + ", ".join(map(str, view["upcoming"])))
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


def _submission_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    what = parser.add_mutually_exclusive_group(required=required)
    what.add_argument("--spec", metavar="SPEC.json", help="the job spec (- for stdin)")
    what.add_argument("--template", metavar="NAME", help="or: one of the tenant's job templates")
    parser.add_argument(
        "--version", type=int, metavar="N", help="pin a template version (default: the latest at each fire)"
    )
    parser.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter, typed as the template declares it (repeatable)",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `schedules`."""
    top = sub.add_parser("schedules", help="a tenant's cron schedules")
    s_sub = top.add_subparsers(dest="schedules_command", metavar="COMMAND", required=True)
    managed = []
    listing = s_sub.add_parser("list", help="list a tenant's schedules and their next fire times")
    listing.set_defaults(handler=_wrap(cmd_list))
    managed.append(listing)
    create = s_sub.add_parser(
        "create", help="a job spec or template call submitted at each time of a cron expression"
    )
    create.add_argument("name")
    create.add_argument("--cron", required=True, help='five fields, e.g. "0 6 * * 1-5"')
    create.add_argument("--timezone", default="UTC", help="IANA name (default UTC)")
    create.add_argument(
        "--catch-up", choices=service.CATCH_UP, default="once", help="a fire missed in an outage"
    )
    create.add_argument("--disabled", action="store_true")
    _submission_options(create, required=True)
    create.set_defaults(handler=_wrap(cmd_create))
    managed.append(create)
    update = s_sub.add_parser("update", help="change a schedule; its next fire counts from now")
    update.add_argument("id", type=int, help="schedule id")
    update.add_argument("--cron", help='five fields, e.g. "0 6 * * 1-5"')
    update.add_argument("--timezone", help="IANA name")
    update.add_argument("--catch-up", choices=service.CATCH_UP, help="a fire missed in an outage")
    _submission_options(update, required=False)
    update.set_defaults(handler=_wrap(cmd_update))
    managed.append(update)
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
