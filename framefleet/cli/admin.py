"""Operator commands: `db upgrade` and `keys create`."""

from __future__ import annotations

import argparse
import sys

import sqlalchemy as sa

from framefleet.config import get_settings
from framefleet.keys import ROLES


def display_url(url: str) -> str:
    """A database URL safe to print (password hidden)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def cmd_db_upgrade(_: argparse.Namespace) -> int:
    """Apply every pending migration to the configured database."""
    from framefleet.db.migrate import upgrade

    url = get_settings().database_url
    upgrade(url)
    print(f"Database {display_url(url)} is at the latest schema.")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create an API key for a tenant and print it once."""
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    try:
        with session_scope() as session:
            raw, key = create_key(session, tenant=args.tenant, role=args.role)
            key_id = key.id
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        url = display_url(get_settings().database_url)
        print(f"cannot create the key in {url}: {exc.orig}", file=sys.stderr)
        print("Is the schema there? Run `framefleet db upgrade` first.", file=sys.stderr)
        return 1
    print(f"Created {args.role} key {key_id} for tenant {args.tenant!r}:")
    print(raw)
    print("Store it now: only its hash is kept, so it cannot be shown again.")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `db` and `keys`."""
    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    db_sub.add_parser("upgrade", help="apply pending migrations").set_defaults(handler=cmd_db_upgrade)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant (created if new)")
    create.add_argument("--tenant", required=True, metavar="NAME")
    create.add_argument(
        "--role",
        choices=ROLES,
        default="submitter",
        help="submitter (default): submit, read and cancel jobs; viewer: read only; admin: everything",
    )
    create.set_defaults(handler=cmd_keys_create)
