"""The Typer CLI against the API on a real socket: each API command group, --output table|json|yaml, profiles
from the config file, shell completion and the documented exit codes."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import httpx
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


@pytest.fixture(scope="module")
def admin_tenant(test_env: dict[str, str]) -> str:
    return f"typer-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def admin_key(admin_tenant: str) -> str:
    with session_scope() as session:
        key, _ = create_key(session, tenant=admin_tenant, role="admin")
    return key


@pytest.fixture()
def opts(api_url: str, admin_key: str) -> list[str]:
    return ["--api", api_url, "--key", admin_key]


def test_jobs_list_get_history_in_table_json_and_yaml(opts: list[str], tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    # No worker runs here: the job stays queued while the test reads it.
    spec.write_text(json.dumps(job_body(cache=False, priority="low")))
    code, out, err = cli("submit", str(spec), "-o", "json", *opts)
    assert code == 0, err
    job = json.loads(out)

    code, out, _ = cli("jobs", "list", "--state", "queued", "--priority", "low", *opts)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "PRIORITY"]
    assert any(row.split()[:3] == [job["id"], "queued", "low"] for row in rows), out
    page = json.loads(cli("jobs", "list", "--output", "json", *opts)[1])
    assert job["id"] in [item["id"] for item in page["items"]]
    # YAML says the same as JSON.
    assert yaml.safe_load(cli("jobs", "list", "-o", "yaml", *opts)[1]) == json.loads(
        cli("jobs", "list", "--json", *opts)[1]
    )
    # `get` prints JSON unless told otherwise; the table is field by field.
    assert json.loads(cli("get", job["id"], *opts)[1])["state"] == "queued"
    table = cli("jobs", "get", job["id"], "-o", "table", *opts)[1]
    assert any(line.split()[:2] == ["state", "queued"] for line in table.splitlines()), table
    history = json.loads(cli("jobs", "history", job["id"], "--json", *opts)[1])
    assert "queued" in json.dumps(history)
    assert cli("jobs", "history", job["id"], *opts)[0] == 0
    held = json.loads(cli("jobs", "hold", job["id"], "--json", *opts)[1])
    assert held["legal_hold"] is True
    code, out, _ = cli("jobs", "release", job["id"], *opts)
    assert code == 0 and "lifted" in out
    code, _, err = cli("jobs", "retry", job["id"], *opts)
    assert code == 1 and "only an ended job" in err
    code, out, _ = cli("jobs", "cancel", job["id"], *opts)
    assert code == 0 and "canceled" in out
    # A retry is a new job with the same spec.
    code, out, err = cli("jobs", "retry", job["id"], "--json", *opts)
    assert code == 0, err
    again = json.loads(out)
    assert again["id"] != job["id"] and again["spec"] == job["spec"]
    assert cli("cancel", again["id"], *opts)[0] == 0


def test_batch_with_a_refused_item_exits_3(opts: list[str], tmp_path: Path) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([job_body(cache=False), job_body(outputs=[])]))
    code, out, _ = cli("submit", str(batch), "--json", *opts)
    assert code == 3
    answer = json.loads(out)
    assert [("job" in item) for item in answer["items"]] == [True, False]
    created = answer["items"][0]["job"]["id"]
    assert cli("cancel", created, *opts)[0] == 0


def test_exit_codes_for_api_errors_usage_and_no_api(opts: list[str], admin_key: str) -> None:
    code, _, err = cli("jobs", "get", "no-such-job", *opts)
    assert code == 1 and err.startswith("API error: 404"), err
    assert cli("jobs", "list", "--state", "bogus", *opts)[0] == 2
    assert cli("submit", *opts)[0] == 2  # neither a file nor --template
    code, _, err = cli("jobs", "list", "--api", "http://127.0.0.1:9", "--key", admin_key)
    assert code == 4 and "cannot reach the API" in err


def test_presets_templates_and_a_template_submission(opts: list[str], tmp_path: Path) -> None:
    name = f"p-{uuid.uuid4().hex[:6]}"
    output = tmp_path / "output.json"
    output.write_text(json.dumps({"container": "mp4", "video": {"codec": "h264", "height": 240}}))
    code, out, err = cli("presets", "create", name, str(output), "--description", "small", *opts)
    assert code == 0, err
    assert json.loads(out)["name"] == name
    listed = cli("presets", "list", *opts)[1]
    assert any(line.split()[:2] == [name, "tenant"] for line in listed.splitlines()), listed
    assert cli("presets", "delete", name, *opts)[0] == 0
    assert cli("presets", "get", name, *opts)[0] == 1

    template = tmp_path / "template.json"
    parameters = {"input": {"type": "uri", "required": True}, "crf": {"type": "integer", "default": 30}}
    outputs = [{"name": "web", "container": "mp4", "video": {"crf": "{{crf}}"}}]
    spec = {"input": "{{input}}", "outputs": outputs, "cache": False}
    template.write_text(json.dumps({"parameters": parameters, "spec": spec}))
    code, _, err = cli("templates", "create", name, str(template), *opts)
    assert code == 0, err
    assert cli("templates", "update", name, str(template), *opts)[0] == 0
    versions = cli("templates", "versions", name, "--json", *opts)[1]
    assert sorted(v["version"] for v in json.loads(versions)["items"]) == [1, 2]
    code, out, err = cli(
        "submit", "--template", name, "--param", f"input={job_body()['input']}", "--param", "crf=28",
        "--version", "1", "--json", *opts,
    )  # fmt: skip
    assert code == 0, err
    job = json.loads(out)
    assert job["spec"]["outputs"][0]["video"]["crf"] == 28
    assert cli("cancel", job["id"], *opts)[0] == 0
    code, _, err = cli("submit", "--template", name, "--param", "crf=zz", *opts)
    assert code == 1 and "422" in err


def test_read_only_views_and_storage_profiles(opts: list[str]) -> None:
    for command in (["queues"], ["usage"], ["slo"], ["storage-profiles", "list"]):
        code, out, err = cli(*command, "--json", *opts)
        assert code == 0, (command, err)
        json.loads(out)
        code, _, err = cli(*command, "-o", "yaml", *opts)
        assert code == 0, (command, err)


def test_upload_and_resume_with_tus(opts: list[str], api_url: str, admin_key: str, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    file = tmp_path / "clip.bin"
    file.write_bytes(data)
    code, out, err = cli("uploads", "create", str(file), "--json", *opts)
    assert code == 0, err
    done = json.loads(out)
    assert (done["state"], done["offset"], done["length"]) == ("complete", len(data), len(data))
    assert done["uri"].endswith(done["id"])

    # An upload cut after its first 100 kB: `uploads resume` sends the rest from the server's offset.
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(250_000))
    tus = {"Tus-Resumable": "1.0.0", "X-API-Key": admin_key}
    with httpx.Client(base_url=api_url, headers=tus) as http:
        metadata = "filename " + base64.b64encode(b"other.bin").decode()
        made = http.post("/v1/uploads", headers={"Upload-Length": "250000", "Upload-Metadata": metadata})
        location = made.headers["Location"]
        http.patch(
            location,
            content=other.read_bytes()[:100_000],
            headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        ).raise_for_status()
    upload_id = location.rsplit("/", 1)[-1]
    assert json.loads(cli("uploads", "get", upload_id, "--json", *opts)[1])["offset"] == 100_000
    code, out, err = cli("uploads", "resume", upload_id, str(other), "--json", *opts)
    assert code == 0, err
    assert json.loads(out)["state"] == "complete"


def _config(home: Path, text: str, mode: int = 0o600) -> dict[str, str]:
    path = home / "framefleet" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    env = {k: v for k, v in os.environ.items() if k not in ("FRAMEFLEET_API_URL", "FRAMEFLEET_API_KEY")}
    return {**env, "XDG_CONFIG_HOME": str(home), "FRAMEFLEET_API_URL": "", "FRAMEFLEET_API_KEY": ""}


def test_profiles_from_the_config_file(api_url: str, admin_key: str, tmp_path: Path) -> None:
    (tmp_path / "key").write_text(admin_key + "\n")
    env = _config(
        tmp_path,
        f'default_profile = "broken"\n'
        f'[profiles.broken]\napi_url = "http://127.0.0.1:9"\napi_key = "{admin_key}"\n'
        f'[profiles.byenv]\napi_url = "{api_url}"\napi_key_env = "MY_FF_KEY"\n'
        f'[profiles.byfile]\napi_url = "{api_url}/"\napi_key_file = "{tmp_path / "key"}"\n',
    )
    # The default profile is used when none is named: it points nowhere.
    assert cli("jobs", "list", env=env)[0] == 4
    assert cli("jobs", "list", "--profile", "byfile", env=env)[0] == 0
    assert cli("jobs", "list", "-p", "byenv", env={**env, "MY_FF_KEY": admin_key})[0] == 0
    code, _, err = cli("jobs", "list", "-p", "byenv", env=env)
    assert code == 2 and "MY_FF_KEY is not set" in err
    code, _, err = cli("jobs", "list", "-p", "nobody", env=env)
    assert code == 2 and "no profile 'nobody'" in err and "byenv, byfile" in err
    # FRAMEFLEET_API_URL overrides the profile's URL; --api overrides both.
    assert cli("jobs", "list", env={**env, "FRAMEFLEET_API_URL": api_url})[0] == 0
    assert (
        cli("jobs", "list", "--api", api_url, env={**env, "FRAMEFLEET_API_URL": "http://127.0.0.1:9"})[0] == 0
    )


def test_a_config_file_with_keys_readable_by_others_is_warned_about(api_url: str, tmp_path: Path) -> None:
    text = f'[profiles.x]\napi_url = "{api_url}"\napi_key = "ff_secret"\n'
    code, _, err = cli("jobs", "list", "-p", "x", env=_config(tmp_path, text, 0o644))
    assert code == 1  # the key is unknown to the API
    assert "other users can read it" in err and "chmod 600" in err
    _, _, err = cli("jobs", "list", "-p", "x", env=_config(tmp_path, text, 0o600))
    assert "other users can read it" not in err


def test_shell_completion_script(tmp_path: Path) -> None:
    code, out, _ = cli("--show-completion", "bash", env={**os.environ, "HOME": str(tmp_path)})
    assert code == 0
    assert "_FRAMEFLEET_COMPLETE=complete_bash" in out and "complete " in out and "framefleet" in out
    # The completion itself: subcommands of `jobs` for `framefleet jobs h<TAB>`.
    result = runner.invoke(
        app,
        [],
        prog_name="framefleet",
        env={"_FRAMEFLEET_COMPLETE": "complete_bash", "COMP_WORDS": "framefleet jobs h", "COMP_CWORD": "2"},
    )
    assert set(result.stdout.split()) == {"history", "hold"}


def test_operator_commands_print_tables_json_and_yaml(test_env: dict[str, str]) -> None:
    tenant = f"op-{uuid.uuid4().hex[:8]}"
    code, out, err = cli("keys", "create", "--tenant", tenant, "--role", "viewer", "-o", "json")
    assert code == 0, err
    made = json.loads(out)
    assert made["role"] == "viewer" and made["key"].startswith("ff_") and made["tenant"] == tenant
    listed = cli("keys", "list", "--tenant", tenant)[1]
    assert listed.splitlines()[0].split()[:4] == ["ID", "PREFIX", "TENANT", "ROLE"]
    assert any(line.split()[:1] == [str(made["id"])] for line in listed.splitlines()[1:]), listed
    assert yaml.safe_load(cli("keys", "list", "--tenant", tenant, "-o", "yaml")[1]) == json.loads(
        cli("keys", "list", "--tenant", tenant, "--json")[1]
    )
    rotated = json.loads(cli("keys", "rotate", str(made["id"]), "--json")[1])
    assert rotated["replaces"] == made["id"] and rotated["key"] != made["key"]
    tenants = yaml.safe_load(cli("tenants", "list", "-o", "yaml")[1])
    assert tenant in [t["name"] for t in tenants]
    for command in (
        ["schedules", "list", "--tenant", tenant],
        ["webhooks", "list", "--tenant", tenant],
        ["workers", "list"],
        ["pools"],
        ["tenants", "usage", tenant],
        ["retention", "sweep", "--dry-run"],
        ["storage", "reconcile", "--dry-run", "--tenant", tenant],
        ["audit", "--tenant", tenant],
    ):
        for output in ("table", "json", "yaml"):
            code, out, err = cli(*command, "-o", output)
            assert code == 0, (command, output, err)
            if output != "table":
                assert (json.loads(out) if output == "json" else yaml.safe_load(out)) is not None
    assert cli("schedules", "list", "--tenant", "nobody-" + tenant)[0] == 1
    assert cli("workers", "describe", "no-such-node")[0] == 1


def test_request_reaches_any_route_and_only_the_api(
    opts: list[str], admin_tenant: str, tmp_path: Path
) -> None:
    body = tmp_path / "key.json"
    body.write_text(json.dumps({"tenant": admin_tenant, "role": "viewer", "description": "from the cli"}))
    code, out, err = cli("request", "POST", "/v1/keys", "--data", f"@{body}", *opts)
    assert code == 0, err
    made = json.loads(out)
    listed = json.loads(cli("request", "GET", "/v1/keys", "--query", "limit=200", *opts)[1])
    assert made["id"] in [key["id"] for key in listed["items"]]
    code, out, _ = cli("request", "POST", f"/v1/keys/{made['id']}/revoke", "-o", "yaml", *opts)
    assert code == 0 and yaml.safe_load(out)["revoked_at"]
    assert cli("request", "GET", "/v1/keys/999999999", *opts)[0] == 1
    # The key is never sent to a host named in the path.
    code, _, err = cli("request", "GET", "http://elsewhere.example/v1/keys", *opts)
    assert code == 2 and "a path on the API" in err
    assert cli("request", "GET", "//elsewhere.example/v1/keys", *opts)[0] == 2
    assert cli("request", "POST", "/v1/keys", "--data", "{not json", *opts)[0] == 2
