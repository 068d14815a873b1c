"""Operator commands for stored data: `retention sweep [--dry-run]` and `storage reconcile [--dry-run]`.

Both act on the database and the stores directly, as the beat's sweep does, so they work when the API is down.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from framefleet.cli.admin import _when, database
from framefleet.cli.common import Cli, Column, output_command, rows_table
from framefleet.config import get_settings


@output_command()
def retention_sweep(
    cli: Cli,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would be deleted; delete nothing")
    ] = False,
    now: Annotated[
        str | None, typer.Option(metavar="ISO8601", help="pretend it is this time (see what falls due when)")
    ] = None,
) -> None:
    """Run one retention pass now (the beat leader runs them on its own)."""
    from framefleet.lifecycle import retention

    done = retention.sweep(get_settings(), now=_when(now), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    lines = [
        f"{d.kind:<8} job {d.job_id} ({d.tenant or '-'}): {verb} {len(d.uris)} object(s), {d.bytes} bytes"
        + (f"  ERROR {d.error}" if d.error else "")
        for d in done
    ] or ["nothing is due"]
    cli.show([d.view() for d in done], lambda _: "\n".join(lines), empty="nothing is due")


@output_command()
def storage_reconcile(
    cli: Cli,
    tenant: Annotated[str | None, typer.Option(metavar="NAME", help="one tenant (default: all)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only; change no counter")] = False,
) -> None:
    """Recompute each tenant's stored bytes from what the stores still hold."""
    from framefleet.lifecycle import ledger
    from framefleet.lifecycle.storage import exists_for
    from framefleet.tenancy import service

    settings = get_settings()
    with database() as session:
        tenant_id = service.get_tenant(session, name=tenant).id if tenant else None
        results = ledger.reconcile(
            session, exists=exists_for(session, settings), tenant_id=tenant_id, dry_run=dry_run
        )
    views = [dataclasses.asdict(r) for r in results]
    columns: list[Column] = [
        ("TENANT", "tenant_id"),
        ("BEFORE", "before"),
        ("AFTER", "after"),
        ("OBJECTS", "objects"),
        ("MISSING", lambda r: len(r["missing"])),
    ]
    cli.show(views, lambda v: rows_table(v, columns), empty="no stored objects")


def register(app: typer.Typer) -> None:
    """Register `retention` and `storage`."""
    retention = typer.Typer(help="deleting files whose retention has passed")
    retention.command("sweep")(retention_sweep)
    app.add_typer(retention, name="retention")
    storage = typer.Typer(help="stored data (on this installation's stores)")
    storage.command("reconcile")(storage_reconcile)
    app.add_typer(storage, name="storage")
