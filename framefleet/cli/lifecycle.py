"""Operator commands for stored data: `retention sweep [--dry-run]` and `storage reconcile [--dry-run]`.

Both act on the database and the stores directly, as the beat's sweep does, so they work when the API is down.
"""

from __future__ import annotations

import argparse
import dataclasses

from framefleet.cli.admin import _print, _when, database, handled
from framefleet.config import get_settings


@handled
def cmd_retention_sweep(args: argparse.Namespace) -> int:
    """One retention pass now; with --dry-run, only what it would delete."""
    from framefleet.lifecycle import retention

    done = retention.sweep(get_settings(), now=_when(args.now), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    lines = [
        f"{d.kind:<8} job {d.job_id} ({d.tenant or '-'}): {verb} {len(d.uris)} object(s), {d.bytes} bytes"
        + (f"  ERROR {d.error}" if d.error else "")
        for d in done
    ] or ["nothing is due"]
    _print([d.view() for d in done], args.json, "\n".join(lines))
    return 0


@handled
def cmd_storage_reconcile(args: argparse.Namespace) -> int:
    """Recompute each tenant's stored bytes from what the stores still hold."""
    from framefleet.lifecycle import ledger
    from framefleet.lifecycle.storage import exists_for
    from framefleet.tenancy import service

    settings = get_settings()
    with database() as session:
        tenant_id = service.get_tenant(session, name=args.tenant).id if args.tenant else None
        results = ledger.reconcile(
            session, exists=exists_for(session, settings), tenant_id=tenant_id, dry_run=args.dry_run
        )
    views = [dataclasses.asdict(r) for r in results]
    lines = [
        f"tenant {r.tenant_id}: {r.before} -> {r.after} bytes, {r.objects} objects, {len(r.missing)} missing"
        for r in results
    ] or ["no stored objects"]
    _print(views, args.json, "\n".join(lines))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `retention` and `storage`."""
    retention = sub.add_parser("retention", help="deleting files whose retention has passed")
    r_sub = retention.add_subparsers(dest="retention_command", metavar="COMMAND", required=True)
    sweep = r_sub.add_parser("sweep", help="run one retention pass (the beat leader runs them on its own)")
    sweep.add_argument("--dry-run", action="store_true", help="show what would be deleted; delete nothing")
    sweep.add_argument("--now", metavar="ISO8601", help="pretend it is this time (see what falls due when)")
    sweep.add_argument("--json", action="store_true")
    sweep.set_defaults(handler=cmd_retention_sweep)

    storage = sub.add_parser("storage", help="stored data")
    s_sub = storage.add_subparsers(dest="storage_command", metavar="COMMAND", required=True)
    reconcile = s_sub.add_parser("reconcile", help="recompute stored bytes per tenant from the stores")
    reconcile.add_argument("--tenant", metavar="NAME", help="one tenant (default: all)")
    reconcile.add_argument("--dry-run", action="store_true", help="report only; change no counter")
    reconcile.add_argument("--json", action="store_true")
    reconcile.set_defaults(handler=cmd_storage_reconcile)
