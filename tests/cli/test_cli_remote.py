"""The operator commands over the API (--api/--key/--profile, or FRAMEFLEET_API_URL): tenants, keys, the
audit log, webhooks, schedules, workers and pools against the API on a real socket, in table, JSON and
YAML; the same commands without those options still act on the database."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from framefleet.cli.main import app
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests.api.conftest import job_body

runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env, prog_name="framefleet")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


@pytest.fixture(scope="module")
def admin_opts(api_url: str, test_env: dict[str, str]) -> list[str]:
    with session_scope() as session:
        key, _ = create_key(session, tenant=f"radm-{uuid.uuid4().hex[:8]}", role="admin")
    return ["--api", api_url, "--key", key]


@pytest.fixture()
def tenant_opts(api_url: str, test_env: dict[str, str]) -> tuple[str, list[str]]:
    """A fresh tenant and an admin key of its own (webhooks and schedules are the key's tenant's)."""
    name = f"rt-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        key, _ = create_key(session, tenant=name, role="admin")
    return name, ["--api", api_url, "--key", key]


def test_tenants_over_the_api(admin_opts: list[str]) -> None:
    name = f"rnew-{uuid.uuid4().hex[:8]}"
    code, out, err = cli("tenants", "create", name, "--settings", '{"team": "news"}', *admin_opts)
    assert code == 0, err
    assert f"Created tenant {name!r}." in out
    code, out, err = cli("tenants", "list", *admin_opts)
    assert code == 0, err
    assert rows(out)[0][:2] == ["NAME", "STATUS"]
    assert [name, "active"] in [row[:2] for row in rows(out)]
    assert json.loads(cli("tenants", "get", name, *admin_opts)[1])["settings"] == {"team": "news"}
    quotas = json.loads(cli("tenants", "quotas", name, "--max-queued-jobs", "7", "--json", *admin_opts)[1])
    assert quotas["max_queued_jobs"] == 7 and quotas["max_running_jobs"] is None
    # The other settings are kept by a quota change.
    got = yaml.safe_load(cli("tenants", "get", name, "-o", "yaml", *admin_opts)[1])
    assert got["settings"] == {"team": "news", "quotas": {"max_queued_jobs": 7}}
    code, out, _ = cli("tenants", "quotas", name, "--max-queued-jobs", "none", *admin_opts)
    assert code == 0 and ["max_queued_jobs", "-"] in rows(out)
    code, out, err = cli("tenants", "suspend", name, "--reason", "unpaid", *admin_opts)
    assert code == 0 and "Suspended" in out, err
    assert json.loads(cli("tenants", "get", name, *admin_opts)[1])["status"] == "suspended"
    code, out, err = cli("tenants", "resume", name, "--json", *admin_opts)
    assert code == 0, err
    assert json.loads(out)["status"] == "active" and json.loads(out)["released_jobs"] == 0
    code, out, err = cli("tenants", "usage", name, *admin_opts)
    assert code == 0 and "QUOTA" in out, err
    assert cli("tenants", "usage", name, "--reconcile", *admin_opts)[0] == 2
    code, _, err = cli("tenants", "get", "nobody-" + name, *admin_opts)
    assert code == 1 and err.startswith("API error: 404"), err


def test_keys_over_the_api(admin_opts: list[str], api_url: str) -> None:
    tenant = f"rkeys-{uuid.uuid4().hex[:8]}"
    # Over the API the tenant must exist (the database command creates it).
    code, _, err = cli("keys", "create", "--tenant", tenant, *admin_opts)
    assert code == 1 and "404" in err, err
    assert cli("tenants", "create", tenant, *admin_opts)[0] == 0
    code, out, err = cli(
        "keys", "create", "--tenant", tenant, "--role", "viewer", "--description", "r", *admin_opts
    )
    assert code == 0, err
    (raw,) = [line for line in out.splitlines() if line.startswith("ff_")]
    assert "cannot be shown again" in out
    # The new key works against the API.
    assert cli("jobs", "list", "--api", api_url, "--key", raw)[0] == 0
    listed = cli("keys", "list", "--tenant", tenant, *admin_opts)[1]
    assert rows(listed)[0][:4] == ["ID", "PREFIX", "TENANT", "ROLE"]
    (made,) = json.loads(cli("keys", "list", "--tenant", tenant, "--json", *admin_opts)[1])
    assert [str(made["id"]), made["prefix"], tenant, "viewer", "active", "r"] in rows(listed)
    rotated = json.loads(cli("keys", "rotate", str(made["id"]), "-o", "json", *admin_opts)[1])
    assert rotated["replaces"] == made["id"] and rotated["key"] != raw
    assert cli("jobs", "list", "--api", api_url, "--key", raw)[0] == 1  # the old key is refused at once
    code, out, err = cli("keys", "revoke", str(rotated["id"]), *admin_opts)
    assert code == 0 and f"Revoked key {rotated['id']}" in out, err
    assert cli("keys", "list", "--tenant", tenant, "--json", *admin_opts)[1].strip() == "[]"
    every = yaml.safe_load(cli("keys", "list", "--tenant", tenant, "--all", "-o", "yaml", *admin_opts)[1])
    assert sorted(k["id"] for k in every) == sorted([made["id"], rotated["id"]])
    assert all(k["revoked_at"] for k in every)


def test_audit_over_the_api_with_filters(admin_opts: list[str]) -> None:
    tenant = f"raud-{uuid.uuid4().hex[:8]}"
    assert cli("tenants", "create", tenant, *admin_opts)[0] == 0
    assert cli("tenants", "suspend", tenant, *admin_opts)[0] == 0
    page = json.loads(cli("audit", "--action", "tenant.suspend", "--limit", "5", "--json", *admin_opts)[1])
    assert page["items"] and all(item["action"] == "tenant.suspend" for item in page["items"])
    assert any(item["target"] and tenant in item["target"] for item in page["items"]), page
    code, out, err = cli(
        "audit", "--action", "tenant.suspend", "--outcome", "ok", "--limit", "5", *admin_opts
    )
    assert code == 0, err
    assert rows(out)[0] == ["AT", "ACTOR", "TENANT", "ACTION", "OUTCOME", "TARGET"]
    assert all(
        len(row) >= 5 and row[0].endswith("Z") for row in rows(out)[1:] if not row[0].startswith("(")
    ), out
    code, _, err = cli("audit", "--tenant", "nobody-" + tenant, *admin_opts)
    assert code == 1 and "404" in err


def test_webhooks_over_the_api(tenant_opts: tuple[str, list[str]]) -> None:
    tenant, opts = tenant_opts
    # The API acts on the key's tenant: a --tenant there is refused, not ignored.
    assert cli("webhooks", "list", "--tenant", tenant, *opts)[0] == 2
    code, out, err = cli("webhooks", "list", *opts)
    assert code == 0 and out.strip() == "no endpoints", err
    code, out, err = cli(
        "webhooks", "create", "https://hooks.example.org/ff", "--event", "job.succeeded", "--json", *opts
    )
    assert code == 0, err
    made = json.loads(out)
    assert made["secret"] and made["event_types"] == ["job.succeeded"]
    listed = cli("webhooks", "list", *opts)[1]
    assert [str(made["id"]), "on"] in [row[:2] for row in rows(listed)]
    code, out, err = cli(
        "webhooks", "update", str(made["id"]), "--disable", "--event", "job.failed", "--json", *opts
    )
    assert code == 0, err
    assert json.loads(out)["enabled"] is False and json.loads(out)["event_types"] == ["job.failed"]
    assert cli("webhooks", "update", str(made["id"]), *opts)[0] == 2  # nothing to change
    got = yaml.safe_load(cli("webhooks", "get", str(made["id"]), "-o", "yaml", *opts)[1])
    assert got["enabled"] is False and "secret" not in got
    rotated = json.loads(cli("webhooks", "rotate", str(made["id"]), "--grace", "0", "--json", *opts)[1])
    assert rotated["secret"] and rotated["secret"] != made["secret"]
    code, out, _ = cli("webhooks", "deliveries", str(made["id"]), *opts)
    assert code == 0 and out.strip() == "no deliveries"
    assert json.loads(cli("webhooks", "deliveries", str(made["id"]), "--json", *opts)[1]) == []
    code, _, err = cli("webhooks", "replay", str(made["id"]), "999999999", *opts)
    assert code == 1 and "404" in err
    code, out, _ = cli("webhooks", "delete", str(made["id"]), *opts)
    assert code == 0 and "deleted" in out
    assert cli("webhooks", "get", str(made["id"]), *opts)[0] == 1


def test_schedules_over_the_api(tenant_opts: tuple[str, list[str]], tmp_path: Path) -> None:
    tenant, opts = tenant_opts
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job_body(cache=False)))
    code, out, err = cli(
        "schedules", "create", "nightly", "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
        "--spec", str(spec), "--json", *opts,
    )  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert made["name"] == "nightly" and made["timezone"] == "Europe/Paris" and len(made["upcoming"]) >= 1
    listed = cli("schedules", "list", *opts)[1]
    assert rows(listed)[0][:4] == ["ID", "ON", "NAME", "CRON"]
    assert [str(made["id"]), "on", "nightly", "0", "3"] in [row[:5] for row in rows(listed)]
    code, out, err = cli("schedules", "update", str(made["id"]), "--cron", "30 4 * * 1-5", "--json", *opts)
    assert code == 0, err
    assert json.loads(out)["cron"] == "30 4 * * 1-5"
    code, _, err = cli("schedules", "update", str(made["id"]), "--cron", "not a cron", *opts)
    assert code == 1 and "422" in err and "cron" in err, err
    assert json.loads(cli("schedules", "disable", str(made["id"]), "--json", *opts)[1])["enabled"] is False
    got = yaml.safe_load(cli("schedules", "get", str(made["id"]), "-o", "yaml", *opts)[1])
    assert got["enabled"] is False
    code, out, _ = cli("schedules", "fires", str(made["id"]), *opts)
    assert code == 0 and out.strip() == "no fires yet"
    code, out, _ = cli("schedules", "delete", str(made["id"]), *opts)
    assert code == 0 and "deleted" in out
    assert cli("schedules", "get", str(made["id"]), *opts)[0] == 1
    # Without an API option the command works on the database, and needs the tenant there.
    code, out, err = cli("schedules", "list", "--tenant", tenant, "--json", env={"FRAMEFLEET_API_URL": ""})
    assert code == 0 and json.loads(out) == [], err
    assert cli("schedules", "list", env={"FRAMEFLEET_API_URL": ""})[0] == 2


def test_workers_and_pools_over_the_api(admin_opts: list[str], api_url: str) -> None:
    node = f"rnode-{uuid.uuid4().hex[:6]}"
    code, _, err = cli("workers", "cordon", node, *admin_opts)
    assert code == 1 and "404" in err  # no worker ever ran there
    # A node a worker process registered on (as a worker does at start).
    from framefleet.db.models import Worker, utcnow

    with session_scope() as session:
        now = utcnow()
        session.add(
            Worker(
                id=f"{node}:1", node=node, host=node, pid=1, pool="cpu", capabilities={}, last_heartbeat=now
            )
        )
    try:
        code, out, err = cli("workers", "cordon", node, "--reason", "disk", *admin_opts)
        assert code == 0, err
        assert out.startswith(f"{node}: cordoned (disk)")
        listed = cli("workers", "list", *admin_opts)[1]
        assert rows(listed)[0][:4] == ["ID", "POOL", "STATUS", "HOLD"]
        assert [f"{node}:1", "cpu"] in [row[:2] for row in rows(listed)] and "cordoned" in listed
        drained = json.loads(cli("workers", "drain", node, "--wait", "--json", *admin_opts)[1])
        assert drained["state"] == "drained" and drained["running_jobs"] == []
        described = yaml.safe_load(cli("workers", "describe", node, "-o", "yaml", *admin_opts)[1])
        assert described["node"] == node and described["state"] == "drained"
        code, out, _ = cli("workers", "uncordon", node, *admin_opts)
        assert code == 0 and out.startswith(f"{node}: active")
        # FRAMEFLEET_API_URL alone sends an operator command to the API too.
        code, out, err = cli("pools", "--json", "--key", admin_opts[3], env={"FRAMEFLEET_API_URL": api_url})
        assert code == 0 and isinstance(json.loads(out), list), err
    finally:
        # A live worker row without capabilities would make later modules' submissions unplaceable.
        with session_scope() as session:
            session.query(Worker).filter(Worker.node == node).delete()
