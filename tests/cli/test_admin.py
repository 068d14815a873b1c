"""`framefleet keys create` and `framefleet db upgrade`, run as the commands they are."""

from __future__ import annotations

import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from framefleet.keys import KEY_PREFIX


def framefleet(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framefleet.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from framefleet.db.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_keys_create_prints_a_working_key_once(test_env: dict[str, str]) -> None:
    from framefleet.db.models import ApiKey
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate, hash_key

    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    result = framefleet("keys", "create", "--tenant", tenant, "--role", "submitter", env=test_env)
    assert result.returncode == 0, result.stderr
    keys = [line for line in result.stdout.splitlines() if line.startswith(KEY_PREFIX)]
    assert len(keys) == 1, result.stdout
    raw = keys[0]
    assert "cannot be shown again" in result.stdout

    with session_scope() as session:
        principal = authenticate(session, raw)
        stored = session.scalars(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(raw))).one()
        assert raw not in (stored.key_hash, stored.prefix)
    assert principal is not None
    assert (principal.tenant, principal.role) == (tenant, "member")


def test_keys_create_defaults_to_the_least_role_that_can_submit(test_env: dict[str, str]) -> None:
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate

    result = framefleet("keys", "create", "--tenant", f"cli-{uuid.uuid4().hex[:8]}", env=test_env)
    assert result.returncode == 0, result.stderr
    assert "Created member key" in result.stdout
    (raw,) = [line for line in result.stdout.splitlines() if line.startswith(KEY_PREFIX)]
    with session_scope() as session:
        principal = authenticate(session, raw)
    assert principal is not None and principal.role == "member"


def test_keys_create_refuses_an_unknown_role(test_env: dict[str, str]) -> None:
    result = framefleet("keys", "create", "--tenant", "x", "--role", "root", env=test_env)
    assert result.returncode == 2
    assert "is not one of" in result.stderr


def test_db_upgrade_creates_the_schema_on_a_fresh_sqlite_file(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "nested" / "fresh.db"
    env = {**test_env, "FRAMEFLEET_DATABASE_URL": f"sqlite:///{path}"}
    result = framefleet("db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"tenants", "api_keys", "jobs", "job_transitions", "job_outputs"} <= tables
    assert version == head_revision()

    # Running it again is a no-op.
    again = framefleet("db", "upgrade", env=env)
    assert again.returncode == 0, again.stderr
    assert stat.S_ISREG(path.stat().st_mode)


def _key_of(stdout: str) -> str:
    (raw,) = [line for line in stdout.splitlines() if line.startswith(KEY_PREFIX)]
    return raw


def test_tenant_and_key_lifecycle_from_the_cli_is_audited(test_env: dict[str, str]) -> None:
    import json

    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate

    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert (
        framefleet("tenants", "create", tenant, "--settings", '{"team": "news"}', env=test_env).returncode
        == 0
    )
    assert framefleet("tenants", "create", tenant, env=test_env).returncode == 1
    created = framefleet(
        "keys",
        "create",
        "--tenant",
        tenant,
        "--role",
        "viewer",
        "--description",
        "wall screen",
        "--cidr",
        "10.0.0.0/8",
        "--expires",
        "2099-01-01T00:00:00",
        env=test_env,
    )
    assert created.returncode == 0, created.stderr
    raw = _key_of(created.stdout)

    listed = json.loads(framefleet("keys", "list", "--tenant", tenant, "--json", env=test_env).stdout)
    assert [(k["role"], k["description"], k["allowed_cidrs"]) for k in listed] == [
        ("viewer", "wall screen", ["10.0.0.0/8"])
    ]
    key_id = listed[0]["id"]

    suspended = framefleet("tenants", "suspend", tenant, "--reason", "audit", env=test_env)
    assert suspended.returncode == 0 and "Suspended" in suspended.stdout
    shown = json.loads(framefleet("tenants", "get", tenant, env=test_env).stdout)
    assert (shown["status"], shown["status_reason"], shown["settings"]) == (
        "suspended",
        "audit",
        {"team": "news"},
    )
    assert "0 held job(s)" in framefleet("tenants", "reactivate", tenant, env=test_env).stdout

    rotated = framefleet("keys", "rotate", str(key_id), env=test_env)
    assert rotated.returncode == 0, rotated.stderr
    new_raw = _key_of(rotated.stdout)
    with session_scope() as session:
        assert authenticate(session, raw) is None
        principal = authenticate(session, new_raw)
    assert principal is not None and principal.role == "viewer"
    assert framefleet("keys", "revoke", str(principal.key_id), env=test_env).returncode == 0
    again = framefleet("keys", "revoke", str(principal.key_id), env=test_env)
    assert again.returncode == 1 and "already revoked" in again.stderr

    rows = json.loads(framefleet("audit", "--actor", "cli", "--limit", "500", "--json", env=test_env).stdout)
    assert [r["action"] for r in rows["items"] if r["target"] == f"tenant:{tenant}"] == [
        "tenant.reactivate",
        "tenant.suspend",
        "tenant.create",
    ]
    assert [
        r["action"] for r in rows["items"] if r["target"] and r["target"].startswith(f"key:{key_id}:")
    ] == [
        "key.rotate",
        "key.create",
    ]
    text = framefleet("audit", "--action", "tenant.suspend", env=test_env).stdout
    assert f"tenant:{tenant}" in text


def test_tenants_usage_reports_quotas_and_reconciles(test_env: dict[str, str]) -> None:
    import json

    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    settings = json.dumps({"quotas": {"max_running_jobs": 2}})
    assert framefleet("tenants", "create", tenant, "--settings", settings, env=test_env).returncode == 0
    shown = framefleet("tenants", "usage", tenant, "--reconcile", "--json", env=test_env)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["quotas"]["max_running_jobs"] == {"usage": 0, "limit": 2}
    assert view["periods"] == []
    text = framefleet("tenants", "usage", tenant, env=test_env)
    assert "max_running_jobs" in text.stdout and "PERIOD" in text.stdout
    assert framefleet("tenants", "usage", "nobody-" + tenant, env=test_env).returncode == 1


def test_tenants_quotas_sets_shows_and_removes_and_resume_reactivates(
    test_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from framefleet.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        # The command in this process (no start-up per call); its output as printed.
        code = main(list(args))
        return code, capsys.readouterr().out

    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    assert run("tenants", "create", tenant)[0] == 0
    code, out = run(
        "tenants", "quotas", tenant, "--max-queued-jobs", "100", "--max-running-jobs", "2", "--json"
    )
    assert code == 0
    assert json.loads(out) == {
        "max_queued_jobs": 100,
        "max_running_jobs": 2,
        "media_minutes_per_month": None,
        "output_bytes": None,
    }
    # One changed, one removed, the rest kept.
    _, out = run(
        "tenants", "quotas", tenant, "--max-running-jobs", "none", "--output-bytes", "5000", "--json"
    )
    assert json.loads(out) == {
        "max_queued_jobs": 100,
        "max_running_jobs": None,
        "media_minutes_per_month": None,
        "output_bytes": 5000,
    }
    _, out = run("tenants", "quotas", tenant)
    assert "max_queued_jobs" in out and "5000" in out
    stored = json.loads(run("tenants", "get", tenant)[1])
    assert stored["settings"]["quotas"] == {"max_queued_jobs": 100, "output_bytes": 5000}
    # A negative quota is a usage error, refused before anything is written.
    assert run("tenants", "quotas", tenant, "--max-queued-jobs", "-1")[0] == 2

    assert run("tenants", "suspend", tenant)[0] == 0
    assert run("tenants", "resume", tenant)[0] == 0
    assert json.loads(run("tenants", "get", tenant)[1])["status"] == "active"
    code, out = run("audit", "--actor", "cli", "--action", "tenant.update", "--json")
    assert code == 0
    changes = [row for row in json.loads(out)["items"] if row["target"] == f"tenant:{tenant}"]
    assert len(changes) == 2, out
