"""`framefleet secrets rotate` re-encrypts storage profiles' credentials too (tenancy/secret_store.py),
run as the command on a database of its own."""

from __future__ import annotations

import json

from framefleet.config import Settings
from tests.cli.test_admin import framefleet

OLD, NEW = "old passphrase of the profiles test", "new passphrase of the profiles test"


def test_rotation_rewrites_profile_credentials_under_the_newest_key(
    test_env: dict[str, str], own_database_url: str
) -> None:
    from framefleet.db.migrate import upgrade
    from framefleet.db.models import StorageProfile
    from framefleet.db.session import session_scope
    from framefleet.storage import profile_service
    from framefleet.tenancy import secrets, service
    from framefleet.tenancy.audit import CLI

    upgrade(own_database_url)
    credentials = {"access_key_id": "AKIA-ROTATE", "secret_access_key": "very secret"}
    with session_scope(own_database_url) as session:
        tenant = service.create_tenant(session, name="rotating-profiles", actor=CLI)
        row = profile_service.create(
            session,
            tenant_id=tenant.id,
            name="media",
            values={"kind": "s3", "bucket": "acme", "credentials": credentials},
            settings=Settings(secret_key=OLD),
        )
        profile_id, before = row.id, row.credentials
    assert before is not None and "very secret" not in before

    env = {**test_env, "FRAMEFLEET_DATABASE_URL": own_database_url, "FRAMEFLEET_SECRET_KEY": f"{NEW},{OLD}"}
    result = framefleet("secrets", "rotate", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"rewritten": 1, "current": 0}
    with session_scope(own_database_url) as session:
        stored = session.get(StorageProfile, profile_id)
        assert stored is not None and stored.credentials not in (None, before)
        assert json.loads(secrets.decrypt(str(stored.credentials), secret_key=NEW)) == credentials
