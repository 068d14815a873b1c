"""`framefleet schedules ...`: a tenant's cron schedules from the operator's shell (the same service as
/v1/schedules)."""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Group

from framefleet.cli import remote
from framefleet.cli.admin import database
from framefleet.cli.common import Cli, Column, operator_command, rows_table, tenant_of
from framefleet.cli.jobs import param_pairs, read_spec
from framefleet.config import get_settings
from framefleet.core.spec import JobSpec
from framefleet.tenancy.service import NotFound as TenantNotFound
from framefleet.tenancy.service import find_tenant
from framefleet.workflows import batch, templates
from framefleet.workflows import schedules as service


def _tenant_id(session: Any, name: str | None) -> int:
    tenant = find_tenant(session, name=tenant_of(name, remote=False))
    if tenant is None:
        raise TenantNotFound(f"no tenant {name!r}")
    return tenant.id


def _refusal(command: Any) -> Any:
    """The scheduling service's refusals as ValueError (one line, exit code 1), with the field at fault."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
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

    return run


FIRE_COLUMNS: list[Column] = [("FIRE AT", "fire_at"), ("JOB", "job_id"), ("ERROR", "error")]
COLUMNS: list[Column] = [
    ("ID", "id"),
    ("ON", lambda v: "on" if v["enabled"] else "off"),
    ("NAME", "name"),
    ("CRON", "cron"),
    ("TIMEZONE", "timezone"),
    ("NEXT", "next_run_at"),
]


def one_schedule(view: dict[str, Any]) -> Any:
    return Group(rows_table([view], COLUMNS), "upcoming: " + ", ".join(map(str, view["upcoming"])))


Tenant = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="the schedule's tenant (on the database; over the API: the key's)"),
]
ScheduleId = Annotated[int, typer.Argument(metavar="ID", help="schedule id")]
Spec = Annotated[str | None, typer.Option(metavar="SPEC.json", help="the job spec (- for stdin)")]
Template = Annotated[str | None, typer.Option(metavar="NAME", help="or: one of the tenant's job templates")]
Version = Annotated[
    int | None, typer.Option(metavar="N", help="pin a template version (default: the latest at each fire)")
]
Params = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME=VALUE", help="a template parameter, typed as the template declares it (repeatable)"
    ),
]
CatchUp = StrEnum("CatchUp", {name: name for name in service.CATCH_UP})  # type: ignore[misc]


@operator_command(remote=remote.schedules_list)
@_refusal
def schedules_list(cli: Cli, tenant: Tenant = None) -> None:
    """List a tenant's schedules and their next fire times."""
    with database() as session:
        rows = [
            service.schedule_view(s)
            for s in service.list_schedules(session, tenant_id=_tenant_id(session, tenant))
        ]
    cli.show(rows, lambda r: rows_table(r, COLUMNS), empty="no schedules")


def _to_submit(
    session: Any,
    *,
    tenant: str,
    tenant_id: int,
    spec: str | None,
    template: str | None,
    version: int | None,
    params: list[str],
) -> dict[str, Any]:
    """What the schedule submits at each fire: the spec file's document, or the template call (each
    `--param` typed as the template declares it, then checked as the API checks it)."""
    settings = get_settings()
    if spec is not None and template is not None:
        raise ValueError("give --spec or --template, not both")
    if template is None and (version is not None or params):
        raise ValueError("--version and --param go with --template")
    if spec is not None:
        checked = JobSpec.model_validate(read_spec(spec))
        return service.spec_document(checked, settings=settings, tenant=tenant)
    assert template is not None
    declared = templates.parameters_of(
        templates.find(session, tenant_id=tenant_id, name=template, version=version)
    )
    typed = {
        name: templates.from_text(declared[name].type, value) if name in declared else value
        for name, value in param_pairs(params).items()
    }
    return service.template_call(
        session,
        tenant_id=tenant_id,
        tenant=tenant,
        name=template,
        version=version,
        params=typed,
        settings=settings,
    )


@operator_command(remote=remote.schedules_create)
@_refusal
def schedules_create(
    cli: Cli,
    name: Annotated[str, typer.Argument(help="the schedule's name")],
    cron: Annotated[str, typer.Option(help='five fields, e.g. "0 6 * * 1-5"')],
    tenant: Tenant = None,
    timezone: Annotated[str, typer.Option(help="IANA name")] = "UTC",
    catch_up: Annotated[CatchUp, typer.Option(help="a fire missed in an outage")] = CatchUp("once"),  # noqa: B008
    disabled: Annotated[bool, typer.Option("--disabled", help="create it switched off")] = False,
    spec: Spec = None,
    template: Template = None,
    version: Version = None,
    param: Params = None,
) -> None:
    """A job spec or template call submitted at each time of a cron expression."""
    if spec is None and template is None:
        raise ValueError("give --spec or --template")
    tenant = tenant_of(tenant, remote=False)
    with database() as session:
        tenant_id = _tenant_id(session, tenant)
        schedule = service.create_schedule(
            session,
            tenant_id=tenant_id,
            name=name,
            cron=cron,
            timezone=timezone,
            spec=_to_submit(
                session,
                tenant=tenant,
                tenant_id=tenant_id,
                spec=spec,
                template=template,
                version=version,
                params=param or [],
            ),
            enabled=not disabled,
            catch_up=catch_up.value,
            actor="cli",
        )
        view = service.schedule_view(schedule)
    cli.show(view, lambda v: f"schedule {v['id']} created; next fires: " + ", ".join(map(str, v["upcoming"])))


@operator_command(remote=remote.schedules_update)
@_refusal
def schedules_update(
    cli: Cli,
    schedule_id: ScheduleId,
    tenant: Tenant = None,
    cron: Annotated[str | None, typer.Option(help='five fields, e.g. "0 6 * * 1-5"')] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA name")] = None,
    catch_up: Annotated[CatchUp | None, typer.Option(help="a fire missed in an outage")] = None,
    spec: Spec = None,
    template: Template = None,
    version: Version = None,
    param: Params = None,
) -> None:
    """Change a schedule; its next fire counts from now."""
    tenant = tenant_of(tenant, remote=False)
    with database() as session:
        tenant_id = _tenant_id(session, tenant)
        changes: dict[str, Any] = {
            key: value
            for key, value in (
                ("cron", cron),
                ("timezone", timezone),
                ("catch_up", catch_up and catch_up.value),
            )
            if value is not None
        }
        if spec is not None or template is not None or param or version is not None:
            changes["spec"] = _to_submit(
                session,
                tenant=tenant,
                tenant_id=tenant_id,
                spec=spec,
                template=template,
                version=version,
                params=param or [],
            )
        if not changes:
            raise ValueError("nothing to change: give --cron, --timezone, --catch-up, --spec or --template")
        schedule = service.update_schedule(
            session, tenant_id=tenant_id, schedule_id=schedule_id, changes=changes
        )
        view = service.schedule_view(schedule)
    cli.show(view, one_schedule)


@operator_command(remote=remote.schedules_get)
@_refusal
def schedules_get(cli: Cli, schedule_id: ScheduleId, tenant: Tenant = None) -> None:
    """A schedule and its next fire times."""
    with database() as session:
        schedule = service.get_schedule(
            session, tenant_id=_tenant_id(session, tenant), schedule_id=schedule_id
        )
        cli.show(service.schedule_view(schedule), one_schedule)


def _enable(cli: Cli, schedule_id: int, tenant: str | None, enabled: bool) -> None:
    with database() as session:
        schedule = service.update_schedule(
            session,
            tenant_id=_tenant_id(session, tenant),
            schedule_id=schedule_id,
            changes={"enabled": enabled},
        )
        view = service.schedule_view(schedule)
    cli.show(view, lambda v: rows_table([v], COLUMNS))


@operator_command(remote=remote.schedules_enable)
@_refusal
def schedules_enable(cli: Cli, schedule_id: ScheduleId, tenant: Tenant = None) -> None:
    """Fire again from the next cron time."""
    _enable(cli, schedule_id, tenant, True)


@operator_command(remote=remote.schedules_disable)
@_refusal
def schedules_disable(cli: Cli, schedule_id: ScheduleId, tenant: Tenant = None) -> None:
    """Stop firing."""
    _enable(cli, schedule_id, tenant, False)


@operator_command(remote=remote.schedules_delete)
@_refusal
def schedules_delete(cli: Cli, schedule_id: ScheduleId, tenant: Tenant = None) -> None:
    """Delete a schedule and its fire log."""
    with database() as session:
        service.delete_schedule(session, tenant_id=_tenant_id(session, tenant), schedule_id=schedule_id)
    cli.show({"id": schedule_id, "deleted": True}, lambda _: f"schedule {schedule_id} deleted")


@operator_command(remote=remote.schedules_fires)
@_refusal
def schedules_fires(
    cli: Cli,
    schedule_id: ScheduleId,
    tenant: Tenant = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
) -> None:
    """A schedule's fires, newest first, with the jobs they made."""
    with database() as session:
        rows = [
            service.fire_view(f)
            for f in service.list_fires(
                session, tenant_id=_tenant_id(session, tenant), schedule_id=schedule_id, limit=limit
            )
        ]
    cli.show(rows, lambda r: rows_table(r, FIRE_COLUMNS), empty="no fires yet")


def register(app: typer.Typer) -> None:
    """Register `schedules`."""
    group = typer.Typer(help="a tenant's cron schedules (on this installation's database, or over the API)")
    for name, command in (
        ("list", schedules_list),
        ("create", schedules_create),
        ("update", schedules_update),
        ("get", schedules_get),
        ("enable", schedules_enable),
        ("disable", schedules_disable),
        ("delete", schedules_delete),
        ("fires", schedules_fires),
    ):
        group.command(name)(command)
    app.add_typer(group, name="schedules")
