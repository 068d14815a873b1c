"""`framefleet workflows submit|get|list|cancel` against the API served on a real socket."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from framefleet.cli.main import main
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests.api.conftest import job_body


def test_submit_get_list_and_cancel_a_workflow(
    api_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with session_scope() as session:
        key, _ = create_key(session, tenant=f"cli-{uuid.uuid4().hex[:8]}", role="member")
    file = tmp_path / "wf.json"
    steps = [
        {"name": "a", "spec": job_body()},
        {"name": "b", "spec": {"input": {"from": "a", "output": "web"}, "poster": {}}},
    ]
    file.write_text(json.dumps({"name": "cli", "steps": steps}))
    options = ["--api", api_url, "--key", key]
    assert main(["workflows", "submit", str(file), *options]) == 0
    run = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in run["steps"]] == ["queued", "pending"]
    assert main(["workflows", "list", *options]) == 0
    assert run["id"] in capsys.readouterr().out
    assert main(["workflows", "cancel", run["id"], *options]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "canceled"
    assert main(["workflows", "get", run["id"], *options]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "canceled"
    # A cycle is the API's 422, reported on stderr with a failing exit status.
    steps[0]["spec"] = job_body(depends_on=["b"])
    file.write_text(json.dumps({"name": "cli", "steps": steps}))
    assert main(["workflows", "submit", str(file), *options]) != 0
    assert "cycle" in capsys.readouterr().err
