"""Operator commands run on the installation: `db upgrade`, `tenants ...`, `keys ...`, `audit` (and
`audit prune`) and `secrets rotate`.

They act on the database directly, as the installation's operator (audit actor `cli`), so they work before any
admin key exists and when the API is down.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import get_settings
from framefleet.tenancy.permissions import ALIASES, ROLES

ROLE_CHOICES = (*ROLES, *ALIASES)
ROLE_HELP = (
    "member (default; `submitter` is the older name): submit, read and cancel the tenant's jobs; "
    "viewer: read them; operator: workers, queues and every tenant's jobs read-only; admin: everything"
)


def display_url(url: str) -> str:
    """A database URL safe to print (password hidden)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class CommandError(Exception):
    """A refusal to print as one line on stderr (exit status 1)."""


@contextmanager
def database() -> Iterator[Session]:
    """A session on the configured database; schema problems become a hint to run `db upgrade`."""
    from framefleet.db.session import session_scope

    try:
        with session_scope() as session:
            yield session
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        url = display_url(get_settings().database_url)
        raise CommandError(
            f"cannot use the database {url}: {exc.orig}\n"
            "Is the schema there? Run `framefleet db upgrade` first."
        ) from exc


def handled(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print refusals of the tenancy service as one line, exit status 1."""
    from framefleet.tenancy.service import Conflict, NotFound

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (CommandError, NotFound, Conflict, ValueError) as exc:
            print(str(exc).strip("'\""), file=sys.stderr)
            return 1

    run.__doc__ = command.__doc__
    return run


def _print(value: Any, as_json: bool, text: str) -> None:
    print(json.dumps(value, default=str, indent=2) if as_json else text)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not an ISO 8601 time (like 2027-01-31T00:00:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    """Apply every pending migration to the configured database."""
    from framefleet.db.migrate import upgrade

    url = get_settings().database_url
    upgrade(url)
    print(f"Database {display_url(url)} is at the latest schema.")
    return 0


@handled
def cmd_tenants_create(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        tenant = service.create_tenant(session, name=args.name, settings=json.loads(args.settings), actor=CLI)
        _print(service.tenant_view(tenant), args.json, f"Created tenant {tenant.name!r}.")
    return 0


@handled
def cmd_tenants_list(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service

    with database() as session:
        views = [service.tenant_view(t) for t in service.list_tenants(session)]
    lines = [f"{v['name']:<32} {v['status']:<10} {v['status_reason'] or ''}" for v in views]
    _print(views, args.json, "\n".join([f"{'NAME':<32} {'STATUS':<10} REASON", *lines]))
    return 0


@handled
def cmd_tenants_get(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service

    with database() as session:
        view = service.tenant_view(service.get_tenant(session, name=args.name))
    print(json.dumps(view, default=str, indent=2))
    return 0


@handled
def cmd_tenants_update(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        tenant = service.update_tenant(session, name=args.name, settings=json.loads(args.settings), actor=CLI)
        _print(service.tenant_view(tenant), args.json, f"Updated tenant {tenant.name!r}.")
    return 0


@handled
def cmd_tenants_usage(args: argparse.Namespace) -> int:
    from framefleet.db.models import utcnow
    from framefleet.tenancy import quotas, service, usage

    with database() as session:
        tenant = service.get_tenant(session, name=args.name)
        if args.reconcile:
            # Recomputed from the tenant's jobs and outputs, in this command's transaction.
            usage.reconcile(session, tenant_id=tenant.id)
        view = quotas.report(session, tenant=tenant, now=utcnow())
    lines = [f"{'QUOTA':<26} {'USAGE':>14} LIMIT"]
    lines += [
        f"{name:<26} {entry['usage']:>14} {'-' if entry['limit'] is None else entry['limit']}"
        for name, entry in view["quotas"].items()
    ]
    lines += ["", f"{'PERIOD':<8} {'JOBS':>8} {'MEDIA MIN':>12} {'OUTPUT BYTES':>16}"]
    lines += [
        f"{p['period']:<8} {p['jobs_succeeded']:>8} {p['media_minutes']:>12} {p['output_bytes']:>16}"
        for p in view["periods"]
    ]
    _print(view, args.json, "\n".join(lines))
    return 0


QUOTA_FIELDS = ("max_queued_jobs", "max_running_jobs", "media_minutes_per_month", "output_bytes")


def _quota_value(text: str) -> int | None:
    """A quota limit on the command line: a whole number, or `none` to remove the quota."""
    if text.lower() == "none":
        return None
    value = int(text)
    if value < 0:
        raise ValueError("a quota is a whole number of at least 0, or none")
    return value


@handled
def cmd_tenants_quotas(args: argparse.Namespace) -> int:
    """Show a tenant's quotas, or set the ones given (the others kept; `none` removes one)."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    # Options not given are absent (argparse.SUPPRESS), so `none` (remove) differs from "keep".
    changes = {name: getattr(args, name) for name in QUOTA_FIELDS if hasattr(args, name)}
    with database() as session:
        tenant = service.get_tenant(session, name=args.name)
        if changes:
            quotas = {**(tenant.settings or {}).get("quotas", {}), **changes}
            quotas = {name: value for name, value in quotas.items() if value is not None}
            settings = {**(tenant.settings or {}), "quotas": quotas}
            tenant = service.update_tenant(session, name=args.name, settings=settings, actor=CLI)
        current = (tenant.settings or {}).get("quotas", {})
    view = {name: current.get(name) for name in QUOTA_FIELDS}
    lines = [f"{name:<26} {'-' if value is None else value}" for name, value in view.items()]
    _print(view, args.json, "\n".join([f"{'QUOTA':<26} LIMIT", *lines]))
    return 0


@handled
def cmd_tenants_suspend(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        service.suspend_tenant(session, name=args.name, reason=args.reason, actor=CLI)
    ttl = get_settings().api_key_cache_seconds
    print(f"Suspended tenant {args.name!r}: its keys are refused within {ttl:g} s; its queued jobs wait.")
    return 0


@handled
def cmd_tenants_reactivate(args: argparse.Namespace) -> int:
    from framefleet.redis_client import get_redis
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    settings = get_settings()
    with database() as session:
        _, released = service.reactivate_tenant(
            session,
            get_redis(settings.redis_url),
            name=args.name,
            actor=CLI,
            events_ttl_seconds=settings.events_ttl_seconds,
        )
    print(f"Reactivated tenant {args.name!r}; {released} held job(s) queued again.")
    return 0


@handled
def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create an API key for a tenant (created if new) and print it once."""
    from framefleet.keys import get_or_create_tenant
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        get_or_create_tenant(session, args.tenant)
        raw, key = service.create_key(
            session,
            tenant=args.tenant,
            role=args.role,
            expires_at=_when(args.expires),
            description=args.description,
            allowed_cidrs=args.cidr,
            actor=CLI,
        )
        key_id, role = key.id, key.role
    print(f"Created {role} key {key_id} for tenant {args.tenant!r}:")
    print(raw)
    print("Store it now: only its hash is kept, so it cannot be shown again.")
    return 0


@handled
def cmd_keys_list(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service

    with database() as session:
        rows = service.list_keys(session, tenant=args.tenant, include_revoked=args.all)
        views = [service.key_view(key, tenant) for key, tenant in rows]
    lines = [
        f"{v['id']:<6} {v['prefix']:<11} {v['tenant']:<24} {v['role']:<9} {_key_status(v)}"
        f"  {v['description'] or ''}"
        for v in views
    ]
    _print(
        views, args.json, "\n".join([f"{'ID':<6} {'PREFIX':<11} {'TENANT':<24} {'ROLE':<9} STATUS", *lines])
    )
    return 0


def _key_status(view: dict[str, Any]) -> str:
    if view["revoked_at"]:
        return "revoked"
    return f"expires {view['expires_at']:%Y-%m-%dT%H:%M:%SZ}" if view["expires_at"] else "active"


@handled
def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        service.revoke_key(session, key_id=args.key_id, actor=CLI)
    ttl = get_settings().api_key_cache_seconds
    print(f"Revoked key {args.key_id}; API processes refuse it within {ttl:g} s (their key cache).")
    return 0


@handled
def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        raw, key = service.rotate_key(session, key_id=args.key_id, actor=CLI)
        key_id = key.id
    print(f"Key {args.key_id} is revoked; its replacement is key {key_id}:")
    print(raw)
    print("Store it now: only its hash is kept, so it cannot be shown again.")
    return 0


@handled
def cmd_audit(args: argparse.Namespace) -> int:
    from framefleet.tenancy import audit, service

    with database() as session:
        tenant_id = None
        if args.tenant is not None:
            tenant_id = service.get_tenant(session, name=args.tenant).id
        filters = audit.AuditFilter(
            tenant_id=tenant_id,
            action=args.action,
            outcome=args.outcome,
            actor=args.actor,
            since=_when(args.since),
            until=_when(args.until),
        )
        rows, next_cursor = audit.list_events(session, filters=filters, limit=args.limit, cursor=args.cursor)
        views = [audit.event_view(row) for row in rows]
    lines = [
        f"{v['at']:%Y-%m-%dT%H:%M:%SZ} {v['actor']:<22} {v['tenant'] or '-':<20} {v['action']:<24} "
        f"{v['outcome']:<7} {v['target'] or ''}"
        for v in views
    ]
    more = [f"(more: --cursor {next_cursor})"] if next_cursor else []
    _print({"items": views, "next_cursor": next_cursor}, args.json, "\n".join([*lines, *more]))
    return 0


@handled
def cmd_audit_prune(args: argparse.Namespace) -> int:
    from framefleet.tenancy import audit
    from framefleet.tenancy.audit import CLI

    before = _when(args.before)
    assert before is not None  # required by the parser
    with database() as session:
        count = audit.prune(session, CLI, before=before, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    _print(
        {"before": before, "dry_run": args.dry_run, "rows": count},
        args.json,
        f"Audit rows before {before.isoformat()}: {verb} {count}.",
    )
    return 0


@handled
def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from framefleet.tenancy import audit
    from framefleet.tenancy.audit import CLI
    from framefleet.tenancy.secret_store import reencrypt_all

    with database() as session:
        done = reencrypt_all(session, secret_key=get_settings().secret_key)
        audit.record(
            session,
            CLI,
            action="secrets.rotate",
            target=None,
            details={"rewritten": done.rewritten, "current": done.current},
        )
    _print(
        {"rewritten": done.rewritten, "current": done.current},
        args.json,
        f"Re-encrypted {done.rewritten} stored secret(s) under the newest key; {done.current} already were.",
    )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `db`, `tenants`, `keys`, `audit` and `secrets`."""
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    db_sub.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=cmd_db_upgrade)

    tenants = sub.add_parser("tenants", help="tenants (admin)")
    t_sub = tenants.add_subparsers(dest="tenants_command", metavar="COMMAND", required=True)
    create = t_sub.add_parser("create", help="create a tenant")
    create.add_argument("name")
    create.add_argument("--settings", default="{}", metavar="JSON")
    create.set_defaults(handler=cmd_tenants_create)
    t_sub.add_parser("list", help="list tenants").set_defaults(handler=cmd_tenants_list)
    get = t_sub.add_parser("get", help="show a tenant")
    get.add_argument("name")
    get.set_defaults(handler=cmd_tenants_get)
    update = t_sub.add_parser("update", help="replace a tenant's settings")
    update.add_argument("name")
    update.add_argument("--settings", required=True, metavar="JSON")
    update.set_defaults(handler=cmd_tenants_update)
    usage_cmd = t_sub.add_parser("usage", help="a tenant's usage against its quotas, per month")
    usage_cmd.add_argument("name")
    usage_cmd.add_argument(
        "--reconcile", action="store_true", help="recompute the counters from the jobs and outputs first"
    )
    usage_cmd.set_defaults(handler=cmd_tenants_usage)
    suspend = t_sub.add_parser("suspend", help="refuse the tenant's keys and hold its queued jobs")
    suspend.add_argument("name")
    suspend.add_argument("--reason")
    suspend.set_defaults(handler=cmd_tenants_suspend)
    quotas_cmd = t_sub.add_parser(
        "quotas", help="show a tenant's quotas, or set the ones given (`none` removes one; others kept)"
    )
    quotas_cmd.add_argument("name")
    for field in QUOTA_FIELDS:
        quotas_cmd.add_argument(
            f"--{field.replace('_', '-')}",
            dest=field,
            type=_quota_value,
            default=argparse.SUPPRESS,
            metavar="N|none",
        )
    quotas_cmd.set_defaults(handler=cmd_tenants_quotas)
    reactivate = t_sub.add_parser(
        "reactivate", aliases=["resume"], help="accept the tenant's keys and queue its held jobs again"
    )
    reactivate.add_argument("name")
    reactivate.set_defaults(handler=cmd_tenants_reactivate)

    keys = sub.add_parser("keys", help="API keys (admin)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant (created if new)")
    create.add_argument("--tenant", required=True, metavar="NAME")
    create.add_argument("--role", choices=ROLE_CHOICES, default="member", help=ROLE_HELP)
    create.add_argument("--expires", metavar="ISO8601", help="when the key stops working (UTC if no offset)")
    create.add_argument("--description", help="a note shown in listings")
    create.add_argument(
        "--cidr", action="append", metavar="NETWORK", help="allow use only from this network (repeatable)"
    )
    create.set_defaults(handler=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="list keys (never their secret)")
    listing.add_argument("--tenant", metavar="NAME")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(handler=cmd_keys_revoke)
    rotate = keys_sub.add_parser("rotate", help="replace a key by a new one with the same rights")
    rotate.add_argument("key_id", type=int)
    rotate.set_defaults(handler=cmd_keys_rotate)

    audit_parser = sub.add_parser("audit", help="read the audit log (newest first)")
    audit_parser.add_argument("--tenant", metavar="NAME")
    audit_parser.add_argument("--action", help="e.g. jobs.submit, key.revoke, tenant.suspend")
    audit_parser.add_argument("--outcome", choices=("ok", "denied", "failed"))
    audit_parser.add_argument("--actor", help="key:<id>:<prefix>, cli or anonymous")
    audit_parser.add_argument("--since", metavar="ISO8601")
    audit_parser.add_argument("--until", metavar="ISO8601")
    audit_parser.add_argument("--limit", type=int, default=50)
    audit_parser.add_argument("--cursor")
    audit_parser.set_defaults(handler=cmd_audit)
    audit_sub = audit_parser.add_subparsers(dest="audit_command", metavar="COMMAND")
    prune = audit_sub.add_parser(
        "prune", help="delete audit rows older than a date (the only way rows are deleted; it is audited)"
    )
    prune.add_argument("--before", required=True, metavar="ISO8601", help="delete rows before this time")
    prune.add_argument("--dry-run", action="store_true", help="count the rows, delete nothing")
    prune.set_defaults(handler=cmd_audit_prune)

    secrets_parser = sub.add_parser("secrets", help="stored secrets (admin)")
    s_sub = secrets_parser.add_subparsers(dest="secrets_command", metavar="COMMAND", required=True)
    s_sub.add_parser(
        "rotate", help="re-encrypt every stored secret with the first key of FRAMEFLEET_SECRET_KEY"
    ).set_defaults(handler=cmd_secrets_rotate)

    # A dict keeps each parser once: an alias (`resume`) maps to the parser of its command.
    for parser in dict.fromkeys(
        (
            *t_sub.choices.values(),
            *keys_sub.choices.values(),
            audit_parser,
            *audit_sub.choices.values(),
            *s_sub.choices.values(),
        )
    ):
        parser.add_argument("--json", action="store_true", help="print JSON")
