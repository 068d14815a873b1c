"""`framefleet schedules ...` run as the commands they are, on the real database."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests.cli.test_admin import framefleet
from tests.conftest import library_uri


def test_create_list_disable_and_refusals(test_env: dict[str, str], tmp_path: Path) -> None:
    tenant = f"cs-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        create_key(session, tenant=tenant, role="admin")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"input": library_uri("clip.mp4"), "outputs": [{"container": "mp4"}]}))
    made = framefleet(
        "schedules", "create", "nightly", "--cron", "30 2 * * *", "--timezone", "Europe/Paris",
        "--spec", str(spec), "--tenant", tenant, "--json", env=test_env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    view = json.loads(made.stdout)
    assert view["name"] == "nightly" and len(view["upcoming"]) == 5
    assert view["upcoming"][0].endswith(("01:30:00+00:00", "00:30:00+00:00"))  # 02:30 in Paris, CET or CEST
    listed = framefleet("schedules", "list", "--tenant", tenant, env=test_env)
    assert "nightly" in listed.stdout and "30 2 * * *" in listed.stdout
    off = framefleet("schedules", "disable", str(view["id"]), "--tenant", tenant, "--json", env=test_env)
    assert json.loads(off.stdout)["enabled"] is False
    bad = framefleet(
        "schedules", "create", "x", "--cron", "0 9 * *", "--spec", str(spec), "--tenant", tenant, env=test_env
    )
    assert bad.returncode == 1 and bad.stderr.startswith("cron:"), bad.stderr
    other = framefleet("schedules", "get", str(view["id"]), "--tenant", f"{tenant}-x", env=test_env)
    assert other.returncode == 1


def test_create_and_update_from_a_template_with_typed_params(test_env: dict[str, str]) -> None:
    from framefleet.tenancy.service import find_tenant
    from framefleet.workflows import templates

    tenant, name = f"ct-{uuid.uuid4().hex[:8]}", f"ingest-{uuid.uuid4().hex[:6]}"
    source = library_uri("clip.mp4")
    parameters = {
        "input": templates.Parameter(type="uri", required=True),
        "crf": templates.Parameter(type="integer", default=30),
    }
    spec = {
        "input": "{{input}}",
        "outputs": [{"name": "web", "container": "mp4", "video": {"crf": "{{crf}}"}}],
    }
    with session_scope() as session:
        create_key(session, tenant=tenant, role="admin")
        found = find_tenant(session, name=tenant)
        assert found is not None
        for new in (True, False):  # versions 1 and 2
            templates.save(
                session,
                tenant_id=found.id,
                name=name,
                description=None,
                parameters=parameters,
                spec=spec,
                new=new,
            )
        session.commit()
    made = framefleet(
        "schedules", "create", "hourly", "--cron", "0 * * * *", "--template", name,
        "--param", f"input={source}", "--param", "crf=28", "--tenant", tenant, "--json", env=test_env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    view = json.loads(made.stdout)
    # The integer parameter is stored as the number the template declares, not the text "28".
    assert view["spec"] is None
    assert view["template"] == {"name": name, "version": None, "params": {"input": source, "crf": 28}}
    bad = framefleet(
        "schedules", "create", "bad", "--cron", "0 * * * *", "--template", name,
        "--param", f"input={source}", "--param", "crf=high", "--tenant", tenant, env=test_env,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.startswith("template.params.crf:"), bad.stderr
    missing = framefleet(
        "schedules", "create", "bad", "--cron", "0 * * * *", "--template", name,
        "--tenant", tenant, env=test_env,
    )  # fmt: skip
    assert missing.returncode == 1 and missing.stderr.startswith("template.params.input:"), missing.stderr
    pinned = framefleet(
        "schedules", "update", str(view["id"]), "--template", name, "--version", "1",
        "--param", f"input={source}", "--cron", "30 6 * * *", "--tenant", tenant, "--json", env=test_env,
    )  # fmt: skip
    assert pinned.returncode == 0, pinned.stderr
    after = json.loads(pinned.stdout)
    assert after["cron"] == "30 6 * * *"
    assert after["template"] == {"name": name, "version": 1, "params": {"input": source}}
    stray = framefleet(
        "schedules", "update", str(view["id"]), "--param", "crf=1", "--tenant", tenant, env=test_env
    )
    assert stray.returncode == 1 and "--template" in stray.stderr, stray.stderr
