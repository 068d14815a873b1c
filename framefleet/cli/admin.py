"""Operator commands run on the installation: `db upgrade`, `tenants ...`, `keys ...`, `audit` (and
`audit prune`) and `secrets rotate`.

They act on the database directly, as the installation's operator (audit actor `cli`), so they work before any
admin key exists and when the API is down.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Group
from sqlalchemy.orm import Session

from framefleet.cli import remote
from framefleet.cli.common import (
    ApiOption,
    Cli,
    Column,
    JsonOption,
    KeyOption,
    Output,
    OutputOption,
    ProfileOption,
    call_api,
    call_local,
    operator_command,
    output_command,
    remote_wanted,
    rows_table,
    stamp,
)
from framefleet.config import get_settings
from framefleet.tenancy.permissions import ALIASES, ROLES

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
    """A refusal to print as one line on stderr (exit code 1)."""


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


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not an ISO 8601 time (like 2027-01-31T00:00:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


Role = StrEnum("Role", {name: name for name in (*ROLES, *ALIASES)})  # type: ignore[misc]
TenantName = Annotated[str, typer.Argument(metavar="NAME", help="the tenant's name")]
SettingsJson = Annotated[str, typer.Option("--settings", metavar="JSON", help="the tenant's settings")]
Since = Annotated[str | None, typer.Option(metavar="ISO8601")]


def db_upgrade() -> None:
    """Apply every pending migration to the configured database."""
    from framefleet.db.migrate import upgrade

    url = get_settings().database_url
    upgrade(url)
    print(f"Database {display_url(url)} is at the latest schema.")


def settings_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"--settings is not JSON: {exc}") from None


TENANT_COLUMNS: list[Column] = [("NAME", "name"), ("STATUS", "status"), ("REASON", "status_reason")]


@operator_command(remote=remote.tenants_create)
def tenants_create(cli: Cli, name: TenantName, settings: SettingsJson = "{}") -> None:
    """Create a tenant."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        tenant = service.create_tenant(session, name=name, settings=settings_json(settings), actor=CLI)
        cli.show(service.tenant_view(tenant), lambda _: f"Created tenant {tenant.name!r}.")


@operator_command(remote=remote.tenants_list)
def tenants_list(cli: Cli) -> None:
    """List tenants."""
    from framefleet.tenancy import service

    with database() as session:
        views = [service.tenant_view(t) for t in service.list_tenants(session)]
    cli.show(views, lambda v: rows_table(v, TENANT_COLUMNS), empty="no tenants")


@operator_command(remote=remote.tenants_get, default=Output.json)
def tenants_get(cli: Cli, name: TenantName) -> None:
    """Show a tenant."""
    from framefleet.tenancy import service

    with database() as session:
        cli.show(service.tenant_view(service.get_tenant(session, name=name)))


@operator_command(remote=remote.tenants_update)
def tenants_update(
    cli: Cli,
    name: TenantName,
    settings: Annotated[str, typer.Option(metavar="JSON", help="the new settings")],
) -> None:
    """Replace a tenant's settings."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        tenant = service.update_tenant(session, name=name, settings=settings_json(settings), actor=CLI)
        cli.show(service.tenant_view(tenant), lambda _: f"Updated tenant {tenant.name!r}.")


def usage_text(view: dict[str, Any]) -> Any:
    quotas = rows_table(
        [{"name": k, **v} for k, v in view["quotas"].items()],
        [("QUOTA", "name"), ("USAGE", "usage"), ("LIMIT", "limit")],
    )
    periods = rows_table(
        view["periods"],
        [
            ("PERIOD", "period"),
            ("JOBS", "jobs_succeeded"),
            ("MEDIA MIN", "media_minutes"),
            ("OUTPUT BYTES", "output_bytes"),
        ],
    )
    return Group(quotas, "", periods)


@operator_command(remote=remote.tenants_usage)
def tenants_usage(
    cli: Cli,
    name: TenantName,
    reconcile: Annotated[
        bool, typer.Option(help="recompute the counters from the jobs and outputs first")
    ] = False,
) -> None:
    """A tenant's usage against its quotas, per month."""
    from framefleet.db.models import utcnow
    from framefleet.tenancy import quotas, service, usage

    with database() as session:
        tenant = service.get_tenant(session, name=name)
        if reconcile:
            # Recomputed from the tenant's jobs and outputs, in this command's transaction.
            usage.reconcile(session, tenant_id=tenant.id)
        view = quotas.report(session, tenant=tenant, now=utcnow())
    cli.show(view, usage_text)


QUOTA_FIELDS = ("max_queued_jobs", "max_running_jobs", "media_minutes_per_month", "output_bytes")


def quota_value(text: str) -> int | None:
    """A quota limit on the command line: a whole number, or `none` to remove the quota."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a whole number or none") from None
    if value < 0:
        raise typer.BadParameter("a quota is a whole number of at least 0, or none")
    return value


Quota = Annotated[str | None, typer.Option(metavar="N|none", help="`none` removes the quota")]


@operator_command(remote=remote.tenants_quotas)
def tenants_quotas(
    cli: Cli,
    name: TenantName,
    max_queued_jobs: Quota = None,
    max_running_jobs: Quota = None,
    media_minutes_per_month: Quota = None,
    output_bytes: Quota = None,
) -> None:
    """Show a tenant's quotas, or set the ones given (`none` removes one; the others are kept)."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    given = (max_queued_jobs, max_running_jobs, media_minutes_per_month, output_bytes)
    with database() as session:
        tenant = service.get_tenant(session, name=name)
        changed = merged_quotas(tenant.settings or {}, dict(zip(QUOTA_FIELDS, given, strict=True)))
        if changed is not None:
            tenant = service.update_tenant(session, name=name, settings=changed, actor=CLI)
        current = (tenant.settings or {}).get("quotas", {})
    cli.show({field: current.get(field) for field in QUOTA_FIELDS}, quotas_table)


def merged_quotas(settings: dict[str, Any], given: dict[str, str | None]) -> dict[str, Any] | None:
    """The tenant's settings with the quotas given set (`none` removes one; an option not given keeps its
    quota); None when nothing was given."""
    changes = {field: quota_value(text) for field, text in given.items() if text is not None}
    if not changes:
        return None
    merged = {**settings.get("quotas", {}), **changes}
    return {**settings, "quotas": {field: value for field, value in merged.items() if value is not None}}


def quotas_table(view: dict[str, Any]) -> Any:
    return rows_table([{"q": k, "l": x} for k, x in view.items()], [("QUOTA", "q"), ("LIMIT", "l")])


@operator_command(remote=remote.tenants_suspend)
def tenants_suspend(
    cli: Cli,
    name: TenantName,
    reason: Annotated[str | None, typer.Option(help="shown to its callers")] = None,
) -> None:
    """Refuse the tenant's keys and hold its queued jobs."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        service.suspend_tenant(session, name=name, reason=reason, actor=CLI)
    ttl = get_settings().api_key_cache_seconds
    cli.show(
        {"name": name, "status": "suspended"},
        lambda _: f"Suspended tenant {name!r}: its keys are refused within {ttl:g} s; its queued jobs wait.",
    )


@operator_command(remote=remote.tenants_reactivate)
def tenants_reactivate(cli: Cli, name: TenantName) -> None:
    """Accept the tenant's keys again and queue its held jobs."""
    from framefleet.redis_client import get_redis
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    settings = get_settings()
    with database() as session:
        _, released = service.reactivate_tenant(
            session,
            get_redis(settings.redis_url),
            name=name,
            actor=CLI,
            events_ttl_seconds=settings.events_ttl_seconds,
        )
    cli.show(
        {"name": name, "status": "active", "released": released},
        lambda _: f"Reactivated tenant {name!r}; {released} held job(s) queued again.",
    )


def new_key_text(intro: str, raw: str) -> str:
    return f"{intro}\n{raw}\nStore it now: only its hash is kept, so it cannot be shown again."


@operator_command(remote=remote.keys_create)
def keys_create(
    cli: Cli,
    tenant: Annotated[str, typer.Option(metavar="NAME", help="the key's tenant (created if new)")],
    role: Annotated[Role, typer.Option(help=ROLE_HELP)] = Role("member"),  # noqa: B008
    expires: Annotated[
        str | None, typer.Option(metavar="ISO8601", help="when it stops working (UTC if no offset)")
    ] = None,
    description: Annotated[str | None, typer.Option(help="a note shown in listings")] = None,
    cidr: Annotated[
        list[str] | None, typer.Option(metavar="NETWORK", help="allow use only from here (repeatable)")
    ] = None,
) -> None:
    """Create an API key for a tenant (created if new) and print it once."""
    from framefleet.keys import get_or_create_tenant
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        get_or_create_tenant(session, tenant)
        raw, key = service.create_key(
            session,
            tenant=tenant,
            role=role.value,
            expires_at=_when(expires),
            description=description,
            allowed_cidrs=cidr or None,
            actor=CLI,
        )
        view = {**service.key_view(key, tenant), "key": raw}
    cli.show(view, lambda v: new_key_text(f"Created {v['role']} key {v['id']} for tenant {tenant!r}:", raw))


def _key_status(view: dict[str, Any]) -> str:
    if view["revoked_at"]:
        return "revoked"
    return f"expires {stamp(view['expires_at'])}" if view["expires_at"] else "active"


KEY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("PREFIX", "prefix"),
    ("TENANT", "tenant"),
    ("ROLE", "role"),
    ("STATUS", _key_status),
    ("DESCRIPTION", "description"),
]


@operator_command(remote=remote.keys_list)
def keys_list(
    cli: Cli,
    tenant: Annotated[str | None, typer.Option(metavar="NAME", help="one tenant's keys")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
) -> None:
    """List keys (never their secret)."""
    from framefleet.tenancy import service

    with database() as session:
        rows = service.list_keys(session, tenant=tenant, include_revoked=all_)
        views = [service.key_view(key, owner) for key, owner in rows]
    cli.show(views, lambda v: rows_table(v, KEY_COLUMNS), empty="no keys")


KeyId = Annotated[int, typer.Argument(metavar="KEY_ID", help="the key's id")]


@operator_command(remote=remote.keys_revoke)
def keys_revoke(cli: Cli, key_id: KeyId) -> None:
    """Revoke a key."""
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        service.revoke_key(session, key_id=key_id, actor=CLI)
    ttl = get_settings().api_key_cache_seconds
    cli.show(
        {"id": key_id, "revoked": True},
        lambda _: f"Revoked key {key_id}; API processes refuse it within {ttl:g} s (their key cache).",
    )


@operator_command(remote=remote.keys_rotate)
def keys_rotate(cli: Cli, key_id: KeyId) -> None:
    """Replace a key by a new one with the same rights."""
    from framefleet.db.models import Tenant
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI

    with database() as session:
        raw, key = service.rotate_key(session, key_id=key_id, actor=CLI)
        owner = session.get(Tenant, key.tenant_id)
        view = {**service.key_view(key, owner.name if owner else "-"), "key": raw, "replaces": key_id}
    cli.show(view, lambda v: new_key_text(f"Key {key_id} is revoked; its replacement is key {v['id']}:", raw))


class Outcome(StrEnum):
    ok = "ok"
    denied = "denied"
    failed = "failed"


def _audit_table(page: dict[str, Any]) -> Any:
    columns: list[Column] = [
        ("AT", lambda v: stamp(v["at"])),
        ("ACTOR", "actor"),
        ("TENANT", "tenant"),
        ("ACTION", "action"),
        ("OUTCOME", "outcome"),
        ("TARGET", "target"),
    ]
    more = [f"(more: --cursor {page['next_cursor']})"] if page["next_cursor"] else []
    return Group(rows_table(page["items"], columns), *more)


def audit_callback(
    ctx: typer.Context,
    output: OutputOption = Output.table,
    json_: JsonOption = False,
    api: ApiOption = None,
    key: KeyOption = None,
    profile: ProfileOption = None,
    tenant: Annotated[str | None, typer.Option(metavar="NAME")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. jobs.submit, key.revoke, tenant.suspend")] = None,
    outcome: Annotated[Outcome | None, typer.Option()] = None,
    actor: Annotated[str | None, typer.Option(help="key:<id>:<prefix>, cli or anonymous")] = None,
    since: Since = None,
    until: Since = None,
    limit: Annotated[int, typer.Option()] = 50,
    cursor: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Read the audit log (newest first); `audit prune` deletes old rows."""
    if ctx.invoked_subcommand is not None:
        return
    query = {
        "tenant": tenant,
        "action": action,
        "outcome": outcome.value if outcome else None,
        "actor": actor,
        "since": since,
        "until": until,
        "limit": limit,
        "cursor": cursor,
    }
    if remote_wanted(api, key, profile):
        call_api(_audit_remote, api=api, key=key, profile=profile, output=output, json_=json_, query=query)
    else:
        call_local(_audit_local, output=output, json_=json_, query=query)


def _audit_remote(cli: Cli, *, query: dict[str, Any]) -> None:
    """The audit log over the API: an admin key reads every tenant's rows, other roles their own tenant's."""
    with cli.client() as api:
        cli.show(api.call("GET", "/v1/audit", **query), _audit_table)


def _audit_local(cli: Cli, *, query: dict[str, Any]) -> None:
    from framefleet.tenancy import audit, service

    with database() as session:
        name = query["tenant"]
        tenant_id = service.get_tenant(session, name=name).id if name is not None else None
        filters = audit.AuditFilter(
            tenant_id=tenant_id,
            action=query["action"],
            outcome=query["outcome"],
            actor=query["actor"],
            since=_when(query["since"]),
            until=_when(query["until"]),
        )
        rows, next_cursor = audit.list_events(
            session, filters=filters, limit=query["limit"], cursor=query["cursor"]
        )
        views = [audit.event_view(row) for row in rows]
    cli.show({"items": views, "next_cursor": next_cursor}, _audit_table)


@output_command()
def audit_prune(
    cli: Cli,
    before: Annotated[str, typer.Option(metavar="ISO8601", help="delete rows before this time")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count the rows, delete nothing")] = False,
) -> None:
    """Delete audit rows older than a date (the only way rows are deleted; it is audited)."""
    from framefleet.tenancy import audit
    from framefleet.tenancy.audit import CLI

    moment = _when(before)
    assert moment is not None  # a required option
    with database() as session:
        count = audit.prune(session, CLI, before=moment, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    cli.show(
        {"before": moment, "dry_run": dry_run, "rows": count},
        lambda _: f"Audit rows before {moment.isoformat()}: {verb} {count}.",
    )


@output_command()
def secrets_rotate(cli: Cli) -> None:
    """Re-encrypt every stored secret with the first key of FRAMEFLEET_SECRET_KEY."""
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
    cli.show(
        {"rewritten": done.rewritten, "current": done.current},
        lambda _: (
            f"Re-encrypted {done.rewritten} stored secret(s) under the newest key; "
            f"{done.current} already were."
        ),
    )


def register(app: typer.Typer) -> None:
    """Register `db`, `tenants`, `keys`, `audit` and `secrets`."""
    db = typer.Typer(help="database maintenance")
    db.command("upgrade")(db_upgrade)
    app.add_typer(db, name="db")

    tenants = typer.Typer(help="tenants (on this installation's database, or over the API)")
    for name, command in (
        ("create", tenants_create),
        ("list", tenants_list),
        ("get", tenants_get),
        ("update", tenants_update),
        ("usage", tenants_usage),
        ("quotas", tenants_quotas),
        ("suspend", tenants_suspend),
        ("reactivate", tenants_reactivate),
    ):
        tenants.command(name)(command)
    tenants.command("resume", help="The same as reactivate (its older name).")(tenants_reactivate)
    app.add_typer(tenants, name="tenants")

    keys = typer.Typer(help="API keys (on this installation's database, or over the API)")
    for name, command in (
        ("create", keys_create),
        ("list", keys_list),
        ("revoke", keys_revoke),
        ("rotate", keys_rotate),
    ):
        keys.command(name)(command)
    app.add_typer(keys, name="keys")

    audit = typer.Typer(
        help="Read the audit log (newest first); `audit prune` deletes old rows.", invoke_without_command=True
    )
    audit.callback()(audit_callback)
    audit.command("prune")(audit_prune)
    app.add_typer(audit, name="audit")

    secrets = typer.Typer(help="stored secrets")
    secrets.command("rotate")(secrets_rotate)
    app.add_typer(secrets, name="secrets")
