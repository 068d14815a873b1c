"""`framefleet webhooks ...`: run the delivery worker, and manage a tenant's endpoints from the
operator's shell (the same service as /v1/webhooks)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from framefleet.cli.admin import _print, database, handled
from framefleet.config import get_settings
from framefleet.logging import configure_logging, get_logger
from framefleet.observability import tracing
from framefleet.tenancy.service import NotFound as TenantNotFound
from framefleet.tenancy.service import find_tenant
from framefleet.webhooks import service
from framefleet.webhooks.feed import DEFAULT_EVENT_TYPES, EVENT_TYPES

READY_MESSAGE = "webhook worker ready."


def cmd_worker(_: argparse.Namespace) -> int:
    """Fan job events out to webhook deliveries and send them until SIGTERM/SIGINT."""
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
    return 0


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

    return handled(run)


def cmd_list(args: argparse.Namespace) -> int:
    with database() as session:
        rows = [
            service.endpoint_view(e)
            for e in service.list_endpoints(session, tenant_id=_tenant_id(session, args.tenant))
        ]
    text = "\n".join(
        f"{r['id']:>5}  {'on ' if r['enabled'] else 'off'}  {r['status']:<8} {r['url']}" for r in rows
    )
    _print(rows, args.json, text or "no endpoints")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    settings = get_settings()
    with database() as session:
        endpoint, secret = service.create_endpoint(
            session,
            tenant_id=_tenant_id(session, args.tenant),
            url=args.url,
            event_types=args.event or list(DEFAULT_EVENT_TYPES),
            description=args.description,
            enabled=not args.disabled,
            secret_key=settings.secret_key,
            allow_private=settings.webhook_allow_private,
        )
        view = {**service.endpoint_view(endpoint), "secret": secret}
    _print(view, args.json, f"endpoint {view['id']} created; signing secret (shown once): {secret}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with database() as session:
        service.delete_endpoint(session, tenant_id=_tenant_id(session, args.tenant), endpoint_id=args.id)
    print(f"endpoint {args.id} deleted")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    settings = get_settings()
    grace = settings.webhook_rotation_grace_seconds if args.grace is None else args.grace
    with database() as session:
        endpoint, secret = service.rotate_secret(
            session,
            tenant_id=_tenant_id(session, args.tenant),
            endpoint_id=args.id,
            grace_seconds=grace,
            secret_key=settings.secret_key,
        )
        view = {**service.endpoint_view(endpoint), "secret": secret}
    _print(view, args.json, f"new secret (shown once): {secret}; the old one signs too for {grace:g}s")
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    with database() as session:
        rows = [
            service.delivery_view(d)
            for d in service.list_deliveries(
                session, tenant_id=_tenant_id(session, args.tenant), endpoint_id=args.id, limit=args.limit
            )
        ]
    text = "\n".join(
        f"{r['id']:>7}  {r['state']:<9} tries={r['attempts']} http={r['response_status']} "
        f"{r['latency_ms']}ms job={r['job_id']} seq={r['sequence']}"
        for r in rows
    )
    _print(rows, args.json, text or "no deliveries")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    with database() as session:
        again = service.replay_delivery(
            session,
            tenant_id=_tenant_id(session, args.tenant),
            endpoint_id=args.id,
            delivery_id=args.delivery,
        )
        view = service.delivery_view(again)
    _print(view, args.json, f"delivery {view['id']} queued (event {view['event_id']})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `webhooks`."""
    hooks = sub.add_parser("webhooks", help="webhook endpoints and the delivery worker")
    h_sub = hooks.add_subparsers(dest="webhooks_command", metavar="COMMAND", required=True)
    h_sub.add_parser("worker", help="run the webhook delivery worker").set_defaults(handler=cmd_worker)
    managed = []
    listing = h_sub.add_parser("list", help="list a tenant's endpoints")
    listing.set_defaults(handler=_wrap(cmd_list))
    managed.append(listing)
    create = h_sub.add_parser("create", help="register an endpoint (prints its secret once)")
    create.add_argument("url")
    create.add_argument(
        "--event", action="append", choices=EVENT_TYPES, help="repeatable; default all but job.progress"
    )
    create.add_argument("--description")
    create.add_argument("--disabled", action="store_true")
    create.set_defaults(handler=_wrap(cmd_create))
    managed.append(create)
    for name, handler, text in (
        ("delete", cmd_delete, "delete an endpoint and its delivery log"),
        ("rotate", cmd_rotate, "new secret; the old one also signs for a grace period"),
        ("deliveries", cmd_deliveries, "an endpoint's delivery log, newest first"),
        ("replay", cmd_replay, "send a delivery again"),
    ):
        parser = h_sub.add_parser(name, help=text)
        parser.add_argument("id", type=int, help="endpoint id")
        parser.set_defaults(handler=_wrap(handler))
        managed.append(parser)
    h_sub.choices["rotate"].add_argument("--grace", type=float, metavar="SECONDS")
    h_sub.choices["deliveries"].add_argument("--limit", type=int, default=50)
    h_sub.choices["replay"].add_argument("delivery", type=int, help="delivery id")
    for parser in managed:
        parser.add_argument("--tenant", required=True, metavar="NAME")
        parser.add_argument("--json", action="store_true", help="print JSON")
