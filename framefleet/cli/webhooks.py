"""`framefleet webhooks ...`: run the delivery worker, and manage a tenant's endpoints from the
operator's shell (the same service as /v1/webhooks)."""

from __future__ import annotations

import functools
import signal
import threading
from enum import StrEnum
from typing import Annotated, Any

import typer

from framefleet.cli import remote
from framefleet.cli.admin import database
from framefleet.cli.common import Cli, Column, Output, operator_command, rows_table, tenant_of
from framefleet.config import get_settings
from framefleet.logging import configure_logging, get_logger
from framefleet.observability import tracing
from framefleet.tenancy.service import NotFound as TenantNotFound
from framefleet.tenancy.service import find_tenant
from framefleet.webhooks import service
from framefleet.webhooks.feed import DEFAULT_EVENT_TYPES, EVENT_TYPES

READY_MESSAGE = "webhook worker ready."


def run_worker() -> None:
    """Run the webhook delivery worker: fan job events out to deliveries and send them until SIGTERM."""
    from framefleet.webhooks.delivery import WebhookWorker

    settings = get_settings()
    tracing.configure("webhooks")
    configure_logging(settings.log_format, settings.log_level)
    worker = WebhookWorker(settings)
    if settings.webhooks_metrics_port:
        from framefleet.observability.metrics import serve_webhook_metrics

        serve_webhook_metrics(settings.webhooks_metrics_port, settings.metrics_host)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    worker.start()
    get_logger("framefleet.cli.webhooks").info(READY_MESSAGE, senders=settings.webhook_senders)
    done.wait()
    worker.close()
    tracing.flush()


def _tenant_id(session: Any, name: str | None) -> int:
    tenant = find_tenant(session, name=tenant_of(name, remote=False))
    if tenant is None:
        raise TenantNotFound(f"no tenant {name!r}")
    return tenant.id


def _refusal(command: Any) -> Any:
    """The webhook service's refusals as ValueError (one line, exit code 1)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except service.NotFound as exc:
            raise ValueError(str(exc)) from None

    return run


Tenant = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="the endpoint's tenant (on the database; over the API: the key's)"),
]
EndpointId = Annotated[int, typer.Argument(metavar="ID", help="endpoint id")]
EventType = StrEnum("EventType", {name: name for name in EVENT_TYPES})  # type: ignore[misc]
ENDPOINT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("ON", lambda r: "on" if r["enabled"] else "off"),
    ("STATUS", "status"),
    ("URL", "url"),
]
DELIVERY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("STATE", "state"),
    ("TRIES", "attempts"),
    ("HTTP", "response_status"),
    ("MS", "latency_ms"),
    ("JOB", "job_id"),
    ("SEQ", "sequence"),
]


@operator_command(remote=remote.webhooks_list)
@_refusal
def webhooks_list(cli: Cli, tenant: Tenant = None) -> None:
    """List a tenant's endpoints."""
    with database() as session:
        rows = [
            service.endpoint_view(e)
            for e in service.list_endpoints(session, tenant_id=_tenant_id(session, tenant))
        ]
    cli.show(rows, lambda r: rows_table(r, ENDPOINT_COLUMNS), empty="no endpoints")


@operator_command(remote=remote.webhooks_get, default=Output.json)
@_refusal
def webhooks_get(cli: Cli, endpoint_id: EndpointId, tenant: Tenant = None) -> None:
    """An endpoint: its URL, events and delivery status (never its secret)."""
    with database() as session:
        endpoint = service.get_endpoint(
            session, tenant_id=_tenant_id(session, tenant), endpoint_id=endpoint_id
        )
        cli.show(service.endpoint_view(endpoint))


@operator_command(remote=remote.webhooks_create)
@_refusal
def webhooks_create(
    cli: Cli,
    url: Annotated[str, typer.Argument(help="where deliveries are POSTed")],
    tenant: Tenant = None,
    event: Annotated[
        list[EventType] | None, typer.Option(help="repeatable; default all but job.progress")
    ] = None,
    description: Annotated[str | None, typer.Option(help="a note shown in listings")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it switched off")] = False,
) -> None:
    """Register an endpoint (prints its signing secret once)."""
    settings = get_settings()
    with database() as session:
        endpoint, secret = service.create_endpoint(
            session,
            tenant_id=_tenant_id(session, tenant),
            url=url,
            event_types=[e.value for e in event] if event else list(DEFAULT_EVENT_TYPES),
            description=description,
            enabled=not disabled,
            secret_key=settings.secret_key,
            allow_private=settings.webhook_allow_private,
        )
        view = {**service.endpoint_view(endpoint), "secret": secret}
    cli.show(view, lambda v: f"endpoint {v['id']} created; signing secret (shown once): {secret}")


def endpoint_changes(
    *, url: str | None, event: list[Any] | None, description: str | None, enabled: bool | None
) -> dict[str, Any]:
    """The fields `webhooks update` was given (the others are kept)."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (("url", url), ("description", description), ("enabled", enabled))
        if value is not None
    }
    if event:
        changes["event_types"] = [e.value for e in event]
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --url, --event, --description, --enable or --disable"
        )
    return changes


@operator_command(remote=remote.webhooks_update)
@_refusal
def webhooks_update(
    cli: Cli,
    endpoint_id: EndpointId,
    tenant: Tenant = None,
    url: Annotated[str | None, typer.Option(help="where deliveries are POSTed")] = None,
    event: Annotated[list[EventType] | None, typer.Option(help="repeatable; replaces the events")] = None,
    description: Annotated[str | None, typer.Option(help="a note shown in listings")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="switch it on (clears `failing`) or off")
    ] = None,
) -> None:
    """Change an endpoint's URL, events, description, or switch it on or off."""
    changes = endpoint_changes(url=url, event=event, description=description, enabled=enabled)
    with database() as session:
        endpoint = service.update_endpoint(
            session,
            tenant_id=_tenant_id(session, tenant),
            endpoint_id=endpoint_id,
            changes=changes,
            allow_private=get_settings().webhook_allow_private,
        )
        view = service.endpoint_view(endpoint)
    cli.show(view, lambda v: rows_table([v], ENDPOINT_COLUMNS))


@operator_command(remote=remote.webhooks_delete)
@_refusal
def webhooks_delete(cli: Cli, endpoint_id: EndpointId, tenant: Tenant = None) -> None:
    """Delete an endpoint and its delivery log."""
    with database() as session:
        service.delete_endpoint(session, tenant_id=_tenant_id(session, tenant), endpoint_id=endpoint_id)
    cli.show({"id": endpoint_id, "deleted": True}, lambda _: f"endpoint {endpoint_id} deleted")


@operator_command(remote=remote.webhooks_rotate)
@_refusal
def webhooks_rotate(
    cli: Cli,
    endpoint_id: EndpointId,
    tenant: Tenant = None,
    grace: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="how long the old secret signs too")
    ] = None,
) -> None:
    """A new signing secret; the old one also signs for a grace period."""
    settings = get_settings()
    seconds = settings.webhook_rotation_grace_seconds if grace is None else grace
    with database() as session:
        endpoint, secret = service.rotate_secret(
            session,
            tenant_id=_tenant_id(session, tenant),
            endpoint_id=endpoint_id,
            grace_seconds=seconds,
            secret_key=settings.secret_key,
        )
        view = {**service.endpoint_view(endpoint), "secret": secret}
    cli.show(view, lambda _: f"new secret (shown once): {secret}; the old one signs too for {seconds:g}s")


@operator_command(remote=remote.webhooks_deliveries)
@_refusal
def webhooks_deliveries(
    cli: Cli,
    endpoint_id: EndpointId,
    tenant: Tenant = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
) -> None:
    """An endpoint's delivery log, newest first."""
    with database() as session:
        rows = [
            service.delivery_view(d)
            for d in service.list_deliveries(
                session, tenant_id=_tenant_id(session, tenant), endpoint_id=endpoint_id, limit=limit
            )
        ]
    cli.show(rows, lambda r: rows_table(r, DELIVERY_COLUMNS), empty="no deliveries")


@operator_command(remote=remote.webhooks_replay)
@_refusal
def webhooks_replay(
    cli: Cli,
    endpoint_id: EndpointId,
    delivery: Annotated[int, typer.Argument(metavar="DELIVERY", help="delivery id")],
    tenant: Tenant = None,
) -> None:
    """Send a delivery again."""
    with database() as session:
        again = service.replay_delivery(
            session,
            tenant_id=_tenant_id(session, tenant),
            endpoint_id=endpoint_id,
            delivery_id=delivery,
        )
        view = service.delivery_view(again)
    cli.show(view, lambda v: f"delivery {v['id']} queued (event {v['event_id']})")


def register(app: typer.Typer) -> None:
    """Register `webhooks`."""
    group = typer.Typer(
        help="webhook endpoints (on this installation's database, or over the API) and the delivery worker"
    )
    group.command("worker")(run_worker)
    for name, command in (
        ("list", webhooks_list),
        ("get", webhooks_get),
        ("create", webhooks_create),
        ("update", webhooks_update),
        ("delete", webhooks_delete),
        ("rotate", webhooks_rotate),
        ("deliveries", webhooks_deliveries),
        ("replay", webhooks_replay),
    ):
        group.command(name)(command)
    app.add_typer(group, name="webhooks")
