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
