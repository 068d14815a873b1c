"""`framefleet secrets rotate` and `framefleet audit prune`, run as the commands they are, each on a database
of its own (the suite's database holds secrets under the suite's key and audit rows other tests read)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from tests.cli.test_admin import framefleet

OLD, NEW = "old passphrase of the test", "new passphrase of the test"


def _dump(url: str) -> str:
    """Every value of every row of the tables that can hold a secret, as one string."""
    from framefleet.db.models import WebhookEndpoint
    from framefleet.db.session import session_scope

    with session_scope(url) as session:
        rows = session.execute(sa.select(WebhookEndpoint.__table__)).all()
    return json.dumps([list(row) for row in rows], default=str)


def test_secrets_rotate_rewrites_old_ciphertexts_under_the_newest_key(
    test_env: dict[str, str], own_database_url: str
) -> None:
    from framefleet.db.migrate import upgrade
    from framefleet.db.models import WebhookEndpoint
    from framefleet.db.session import session_scope
    from framefleet.tenancy import secrets, service
    from framefleet.tenancy.audit import CLI
    from framefleet.webhooks import service as webhooks

    upgrade(own_database_url)
    with session_scope(own_database_url) as session:
        tenant = service.create_tenant(session, name="rotating", actor=CLI)
        endpoint, first = webhooks.create_endpoint(
            session,
            tenant_id=tenant.id,
            url="http://127.0.0.1:9/hook",
            event_types=["job.succeeded"],
            description=None,
            enabled=True,
            secret_key=OLD,
            allow_private=True,
        )
        _, second = webhooks.rotate_secret(
            session, tenant_id=tenant.id, endpoint_id=endpoint.id, grace_seconds=3600, secret_key=OLD
        )
        session.commit()
        endpoint_id = endpoint.id
    before = _dump(own_database_url)
    assert first not in before and second not in before

    env = {**test_env, "FRAMEFLEET_DATABASE_URL": own_database_url, "FRAMEFLEET_SECRET_KEY": f"{NEW},{OLD}"}
    result = framefleet("secrets", "rotate", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"rewritten": 2, "current": 0}

    with session_scope(own_database_url) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None and row.previous_secret is not None
        # The newest key alone opens both now: the old ciphertexts were rewritten, not just still readable.
        assert secrets.decrypt(row.secret, secret_key=NEW) == second
        assert secrets.decrypt(row.previous_secret, secret_key=NEW) == first
        tokens = (row.secret, row.previous_secret)
    after = _dump(own_database_url)
    assert first not in after and second not in after
    assert all(token not in before for token in tokens)

    again = framefleet("secrets", "rotate", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"rewritten": 0, "current": 2}
    with session_scope(own_database_url) as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None and (row.secret, row.previous_secret) == tokens

    audited = framefleet("audit", "--action", "secrets.rotate", "--json", env=env)
    assert [r["details"]["rewritten"] for r in json.loads(audited.stdout)["items"]] == [0, 2]


def test_secrets_rotate_without_the_old_key_changes_nothing(
    test_env: dict[str, str], own_database_url: str
) -> None:
    from framefleet.db.migrate import upgrade
    from framefleet.db.session import session_scope
    from framefleet.tenancy import service
    from framefleet.tenancy.audit import CLI
    from framefleet.webhooks import service as webhooks

    upgrade(own_database_url)
    with session_scope(own_database_url) as session:
        tenant = service.create_tenant(session, name="lost-key", actor=CLI)
        webhooks.notify_secret_row(session, tenant_id=tenant.id, secret_key=OLD)
        session.commit()
    before = _dump(own_database_url)
    env = {**test_env, "FRAMEFLEET_DATABASE_URL": own_database_url, "FRAMEFLEET_SECRET_KEY": NEW}
    result = framefleet("secrets", "rotate", env=env)
    assert result.returncode == 1
    assert "cannot be decrypted" in result.stderr
    assert _dump(own_database_url) == before


def test_audit_prune_deletes_only_older_rows_and_records_itself(
    test_env: dict[str, str], own_database_url: str
) -> None:
    from framefleet.db.migrate import upgrade
    from framefleet.db.models import AuditEvent
    from framefleet.db.session import session_scope
    from framefleet.tenancy.audit import CLI, event_row

    upgrade(own_database_url)
    now = datetime.now(UTC)
    ages = [400, 200, 100, 1]
    with session_scope(own_database_url) as session:
        session.execute(
            sa.insert(AuditEvent),
            [
                event_row(
                    CLI, action="tenant.create", target=f"t{d}", outcome="ok", at=now - timedelta(days=d)
                )
                for d in ages
            ],
        )
        session.commit()
    env = {**test_env, "FRAMEFLEET_DATABASE_URL": own_database_url}
    cutoff = (now - timedelta(days=150)).strftime("%Y-%m-%dT%H:%M:%S")

    dry = framefleet("audit", "prune", "--before", cutoff, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 2" in dry.stdout

    def targets() -> list[str | None]:
        with session_scope(own_database_url) as session:
            return list(session.scalars(sa.select(AuditEvent.target).order_by(AuditEvent.id)))

    assert targets() == ["t400", "t200", "t100", "t1"]

    real = framefleet("audit", "prune", "--before", cutoff, "--json", env=env)
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["rows"] == 2
    assert targets() == ["t100", "t1", None]
    (row,) = json.loads(framefleet("audit", "--action", "audit.prune", "--json", env=env).stdout)["items"]
    assert (row["actor"], row["details"]["deleted"]) == ("cli", 2)

    bad = framefleet("audit", "prune", "--before", "last tuesday", env=env)
    assert bad.returncode == 1 and "ISO 8601" in bad.stderr
