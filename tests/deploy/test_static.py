"""The deployment files, checked without containers (part of `make test`).

The gateway against the app's own OpenAPI document, the compose profiles against the deployment rules,
every FRAMEFLEET_ variable against Settings, the Dockerfiles at lint level, the dependency lock against
pyproject.toml, the monitoring files, and the image scripts run with stand-ins for what they start.
`make test-deploy` (tests/deploy/run.sh) then builds and runs all of it for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from framefleet.api.app import MAX_BODY_BYTES, create_app
from framefleet.config import Settings
from tests.deploy import check_config, lockfile

ROOT = Path(__file__).resolve().parents[2]
KRAKEND = ROOT / "krakend" / "krakend.json"
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.gpu"]
# Headers every gateway route must pass to the API (authentication, idempotency, SSE resume, tracing).
FORWARDED = {"X-API-Key", "Authorization", "Idempotency-Key", "Last-Event-ID", "X-Request-ID"}
# Files of the deployment that must not name a package registry's host.
DEPLOY_FILES = [
    *DOCKERFILES,
    ROOT / "docker" / "entrypoint.sh",
    ROOT / "docker" / "requirements.txt",
    ROOT / "compose.yaml",
    ROOT / ".dockerignore",
    ROOT / "deploy" / "make-secrets.sh",
    ROOT / "deploy" / "prod.env.example",
    *sorted((ROOT / "deploy" / "kubernetes").rglob("*.*")),
    ROOT / "tests" / "deploy" / "run.sh",
    *sorted((ROOT / "tests" / "deploy" / "standins").rglob("*")),
]
REGISTRY_HOSTS = re.compile(
    r"pypi\.org|pythonhosted\.org|deb\.debian\.org|security\.debian\.org|registry\.npmjs\.org|"
    r"docker\.io|registry-1\.docker|ghcr\.io|quay\.io|nvcr\.io"
)
SETTINGS_FIELDS = {f"FRAMEFLEET_{name.upper()}" for name in Settings.model_fields}


# ------------------------------------------------------------------ gateway vs the app's OpenAPI


def _krakend() -> dict[str, Any]:
    data = json.loads(KRAKEND.read_text())
    assert isinstance(data, dict)
    return data


def _public_operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> OpenAPI operation for every /v1 route of the app as built right now."""
    app = create_app(Settings(env="test"))
    document = app.openapi()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert app.openapi_url and app.openapi_url.startswith("/v1/")
    operations[("GET", app.openapi_url)] = {"parameters": []}
    return operations


def _endpoints() -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["method"], e["endpoint"]): e for e in _krakend()["endpoints"]}


def test_gateway_serves_exactly_the_public_routes_of_the_api() -> None:
    api = set(_public_operations())
    gateway = set(_endpoints())
    assert not api - gateway, f"routes of the API missing from krakend/krakend.json: {sorted(api - gateway)}"
    assert not gateway - api, f"gateway routes the API does not have: {sorted(gateway - api)}"


def test_gateway_proxies_each_route_to_the_same_api_route_untouched() -> None:
    for (method, path), endpoint in _endpoints().items():
        (backend,) = endpoint["backend"]
        assert backend["url_pattern"] == path and backend.get("method", method) == method
        assert backend["host"] == ["http://api:8000"], path
        # no-op: status codes, Location, problem+json bodies and streams pass through as the API sent them.
        assert endpoint["output_encoding"] == "no-op" and backend["encoding"] == "no-op", path


def test_gateway_forwards_auth_idempotency_resume_and_request_id_headers() -> None:
    operations = _public_operations()
    for key, endpoint in _endpoints().items():
        headers = set(endpoint["input_headers"])
        assert headers >= FORWARDED, (key, FORWARDED - headers)
        declared = {p["name"] for p in operations[key].get("parameters", []) if p["in"] == "header"}
        assert headers >= declared, (key, declared - headers)


def test_gateway_forwards_every_query_parameter_the_api_declares() -> None:
    operations = _public_operations()
    for key, endpoint in _endpoints().items():
        forwarded = set(endpoint.get("input_query_strings", []))
        declared = {p["name"] for p in operations[key].get("parameters", []) if p["in"] == "query"}
        assert "*" in forwarded or forwarded >= declared, (key, declared - forwarded)


def _duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def test_event_streams_pass_through_and_outlive_the_longest_job() -> None:
    operations = _public_operations()
    streams = [
        key
        for key, op in operations.items()
        if "text/event-stream" in op.get("responses", {}).get("200", {}).get("content", {})
    ]
    assert streams, "the API declares no event stream"
    default_job_max = Settings.model_fields["job_max_seconds"].default
    config = _krakend()
    assert "write_timeout" not in config, "a server write timeout would cut event streams"
    for key in streams:
        endpoint = _endpoints()[key]
        assert endpoint["output_encoding"] == "no-op"
        assert _duration_seconds(endpoint["timeout"]) > default_job_max, key
        assert "Last-Event-ID" in endpoint["input_headers"]
    for key, endpoint in _endpoints().items():
        if key not in streams:
            assert _duration_seconds(endpoint.get("timeout", config["timeout"])) <= 60, key


def test_gateway_limits_rate_per_ip_and_per_key_body_size_and_answers_cors_and_health() -> None:
    config = _krakend()
    service = config["extra_config"]
    ip_limit = service["qos/ratelimit/router"]
    assert ip_limit["strategy"] == "ip" and ip_limit["client_max_rate"] > 0
    for key, endpoint in _endpoints().items():
        if key[1] == "/v1/openapi.json":
            continue
        per_key = endpoint["extra_config"]["qos/ratelimit/router"]
        assert per_key["strategy"] == "header" and per_key["key"] == "X-API-Key", key
        assert 0 < per_key["client_max_rate"] <= ip_limit["client_max_rate"], key
    assert service["router"]["max_payload"] == MAX_BODY_BYTES
    assert service["router"]["health_path"] == "/__health"
    cors = service["security/cors"]
    assert set(cors["allow_headers"]) >= FORWARDED | {"Content-Type"}
    assert {"Location", "X-Request-ID"} <= set(cors["expose_headers"])
    assert cors["allow_credentials"] is False


# ------------------------------------------------------------------ compose


def test_compose_profiles_follow_the_deployment_rules() -> None:
    compose = check_config.load_compose()
    combinations = ({"dev"}, {"prod"}, {"prod", "gpu"}, {"dev", "monitoring"}, {"prod", "gpu", "monitoring"})
    for profiles in combinations:
        resolved = check_config.resolve(compose, profiles)
        assert check_config.problems(resolved, profiles) == [], profiles


def test_every_service_belongs_to_a_profile() -> None:
    services = check_config.load_compose()["services"]
    assert all(service.get("profiles") for service in services.values())
    assert set(services) == set().union(*check_config.PROFILE_SERVICES.values())


def test_the_rules_catch_a_published_api_and_a_secret_in_the_environment() -> None:
    compose = check_config.load_compose()
    resolved = check_config.resolve(compose, {"prod"})
    resolved["services"]["prod-api"]["ports"] = ["8000:8000"]
    resolved["services"]["prod-worker"]["environment"]["FRAMEFLEET_SECRET_KEY"] = "x"
    found = check_config.problems(resolved, {"prod"})
    assert any("prod-api publishes" in p for p in found)
    assert any("prod-worker sets FRAMEFLEET_SECRET_KEY" in p for p in found)


def _framefleet_variables() -> set[str]:
    """Every FRAMEFLEET_* name compose.yaml, the env example, the Dockerfiles and the Kubernetes manifests set
    or interpolate."""
    texts = [
        (ROOT / "compose.yaml").read_text(),
        (ROOT / "deploy" / "prod.env.example").read_text(),
        *(path.read_text() for path in DOCKERFILES),
        *(path.read_text() for path in sorted((ROOT / "deploy" / "kubernetes").rglob("*.*"))),
    ]
    names = set()
    for text in texts:
        names |= set(re.findall(r"\b(FRAMEFLEET_[A-Z0-9_]+)", text))
    return names


def test_every_framefleet_variable_is_a_documented_setting() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    names = _framefleet_variables()
    assert names
    for name in sorted(names):
        # NAME_FILE is the entrypoint's way of reading NAME from a compose secret.
        setting = name.removesuffix("_FILE")
        assert setting in SETTINGS_FIELDS, f"{name} is not a FrameFleet setting"
        assert f"`{setting}`" in documented, f"{setting} is not in docs/configuration.md"


def test_no_working_production_secret_is_committed() -> None:
    env_example = (ROOT / "deploy" / "prod.env.example").read_text()
    for secret in ("FRAMEFLEET_SECRET_KEY", "FRAMEFLEET_DATABASE_URL", "FRAMEFLEET_REDIS_URL"):
        assert f"{secret}=" not in env_example
    assert not (ROOT / "deploy" / "secrets").exists() or not any((ROOT / "deploy" / "secrets").iterdir())
    ignored = (ROOT / "deploy" / ".gitignore").read_text().split()
    assert "/secrets/" in ignored and "/prod.env" in ignored
    compose = check_config.load_compose()
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("${DEPLOY_SECRETS_DIR:-./deploy/secrets}/"), name


def test_make_secrets_writes_consistent_private_files_once(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "make-secrets.sh"), str(target)], check=True, capture_output=True
    )
    used = set(check_config.load_compose()["secrets"])
    files = {p.name: p.read_text().strip() for p in target.iterdir()}
    assert set(files) == used
    for path in target.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    password = files["postgres_password"]
    assert files["framefleet_database_url"] == f"postgresql://framefleet:{password}@postgres:5432/framefleet"
    redis_password = files["redis_conf"].removeprefix("requirepass ")
    assert files["framefleet_redis_url"] == f"redis://:{redis_password}@redis:6379/0"
    assert Settings(env="prod", secret_key=files["framefleet_secret_key"]).env == "prod"
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "make-secrets.sh"), str(target)], check=True, capture_output=True
    )
    assert {p.name: p.read_text().strip() for p in target.iterdir()} == files


# ------------------------------------------------------------------ Dockerfiles


def _stages(path: Path) -> list[list[str]]:
    """Instructions (continuation lines joined) grouped by build stage."""
    lines: list[str] = []
    current = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        current += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if current.strip():
                lines.append(current.strip())
            current = ""
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_pinned_unprivileged_and_healthchecked(path: Path) -> None:
    text = path.read_text()
    assert "<<" not in text, "heredocs are not supported by every builder"
    stages = _stages(path)
    assert len(stages) >= 2, "the final image must not carry the build tools"
    for stage in stages:
        image = stage[0].split()[1]
        _, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"unpinned base {image}"
    final = stages[-1]
    final_text = "\n".join(final)
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the final stage must not run as root"
    assert any(line.upper().startswith("HEALTHCHECK ") for line in final)
    assert any(line.upper().startswith("VOLUME ") for line in final)
    assert re.search(r'ENTRYPOINT \["tini", "--"', final_text)
    for tool in ("gcc", "g++", "build-essential", "python3-dev", "python3-venv", "make"):
        assert not re.search(rf"install[^\n]*\s{re.escape(tool)}(\s|$)", final_text), tool
    assert "pip uninstall --yes pip" in text, "the final environment must not carry pip"
    assert "--only-binary=:all:" in text
    assert re.search(r"ARG PIP_INDEX_URL=\"\"", text)


def test_both_images_share_the_build_stage_and_the_gpu_one_asks_for_video() -> None:
    cpu, gpu = (_stages(path) for path in DOCKERFILES)
    assert cpu[0][1:] == gpu[0][1:], "identical build stages let the builders share their layers"
    gpu_text = DOCKERFILES[1].read_text()
    assert "nvidia/cuda:" in _stages(DOCKERFILES[1])[-1][0]
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*video", gpu_text)
    assert 'CMD ["worker", "--pool", "gpu"]' in gpu_text


def test_no_deployment_file_names_a_registry_host() -> None:
    for path in DEPLOY_FILES:
        if path.is_file():
            found = REGISTRY_HOSTS.search(path.read_text(errors="replace"))
            assert found is None, f"{path.relative_to(ROOT)} names {found.group(0) if found else ''}"


def test_dockerignore_keeps_the_context_to_what_the_images_copy() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied: set[str] = set()
    for path in DOCKERFILES:
        for line in path.read_text().splitlines():
            if line.startswith("COPY ") and "--from=" not in line:
                copied |= {src.split("/")[0] for src in line.split()[1:-1]}
    assert copied <= allowed, copied - allowed
    assert {".venv", ".git", ".data", "tests"}.isdisjoint(allowed)


@pytest.mark.parametrize(
    "script",
    [
        "docker/entrypoint.sh",
        "deploy/make-secrets.sh",
        "tests/deploy/run.sh",
        "tests/deploy/standins/postgres/entrypoint.sh",
        "tests/deploy/standins/redis/redis-server",
        "tests/deploy/standins/minio/minio",
        "tests/deploy/standins/minio/mc",
    ],
)
def test_scripts_are_executable_and_parse(script: str) -> None:
    path = ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    shell = "bash" if path.read_text().startswith("#!/usr/bin/env bash") else "sh"
    subprocess.run([shell, "-n", str(path)], check=True)


# ------------------------------------------------------------------ the image's scripts, run here


def _run_entrypoint(tmp_path: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """docker/entrypoint.sh with stand-ins for the programs it hands over to, which print what they got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in ("framefleet", "celery", "python", "uvicorn", "watchfiles"):
        stub = bin_dir / program
        stub.write_text(f'#!/bin/sh\necho "{program} $*"\nenv | grep -E "^(FRAMEFLEET|FLOWER)_" | sort\n')
        stub.chmod(0o755)
    return subprocess.run(
        ["sh", str(ROOT / "docker" / "entrypoint.sh"), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_entrypoint_reads_secrets_from_files_and_hands_over_to_framefleet(tmp_path: Path) -> None:
    secret = tmp_path / "secret_key"
    secret.write_text("s3cr3t-value\n")
    done = _run_entrypoint(tmp_path, ["worker", "--pool", "cpu"], {"FRAMEFLEET_SECRET_KEY_FILE": str(secret)})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "framefleet worker --pool cpu"
    assert "FRAMEFLEET_SECRET_KEY=s3cr3t-value" in lines
    assert not any(line.startswith("FRAMEFLEET_SECRET_KEY_FILE=") for line in lines)


def test_entrypoint_refuses_an_unreadable_secret_file(tmp_path: Path) -> None:
    done = _run_entrypoint(tmp_path, ["api"], {"FRAMEFLEET_DATABASE_URL_FILE": str(tmp_path / "missing")})
    assert done.returncode == 64 and "cannot be read" in done.stderr


def test_entrypoint_runs_flower_on_all_interfaces_with_basic_auth_required_in_prod(tmp_path: Path) -> None:
    refused = _run_entrypoint(tmp_path, ["flower"], {"FRAMEFLEET_ENV": "prod"})
    assert refused.returncode == 64 and "FLOWER_BASIC_AUTH" in refused.stderr
    auth = tmp_path / "auth"
    auth.write_text("admin:pw\n")
    env = {"FRAMEFLEET_ENV": "prod", "FLOWER_BASIC_AUTH_FILE": str(auth), "FRAMEFLEET_FLOWER_PORT": "5600"}
    done = _run_entrypoint(tmp_path, ["flower"], env)
    assert done.returncode == 0, done.stderr
    first, *seen = done.stdout.splitlines()
    assert first == ("celery --app framefleet.celery_app:app --quiet flower --address=0.0.0.0 --port=5600")
    assert "FLOWER_BASIC_AUTH=admin:pw" in seen
    assert not any(line.startswith("FLOWER_BASIC_AUTH_FILE") for line in seen)


def test_entrypoint_reload_mode_runs_uvicorn_and_watchfiles(tmp_path: Path) -> None:
    api = _run_entrypoint(tmp_path, ["--reload", "api"], {})
    assert api.returncode == 0, api.stderr
    assert api.stdout.startswith("uvicorn framefleet.api.app:create_app --factory --reload --reload-dir")
    worker = _run_entrypoint(tmp_path, ["--reload", "worker", "--pool", "cpu"], {})
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.startswith("watchfiles --filter python framefleet-entrypoint worker --pool cpu ")


def _healthcheck() -> Any:
    sys.path.insert(0, str(ROOT / "docker"))
    try:
        import healthcheck
    finally:
        sys.path.pop(0)
    return healthcheck


def test_healthcheck_reads_the_service_from_pid_1() -> None:
    hc = _healthcheck()
    assert hc.service_argv(b"tini\0--\0/usr/local/bin/framefleet-entrypoint\0worker\0--pool\0gpu\0") == [
        "worker",
        "--pool",
        "gpu",
    ]
    assert hc.service_argv(b"tini\0--\0framefleet-entrypoint\0--reload\0api\0") == ["api"]
    assert hc.service_argv(b"/opt/framefleet/bin/python\0/opt/framefleet/bin/framefleet\0beat\0") == ["beat"]
    assert hc.service_argv(b"sleep\0100\0") == []
    assert hc.option(["worker", "--pool=gpu", "--name", "n@%h"], "--pool") == "gpu"
    assert hc.option(["worker", "--pool=gpu", "--name", "n@%h"], "--name") == "n@%h"
    assert hc.option(["worker"], "--name") is None
    assert hc.check(["db", "upgrade"]) is True


# ------------------------------------------------------------------ the dependency lock


def test_lock_pins_every_runtime_dependency_within_pyproject_ranges() -> None:
    pins = lockfile.parse(lockfile.LOCK_PATH.read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in docker/requirements.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_lock_is_closed_over_the_requirements_of_what_it_pins() -> None:
    pins = lockfile.parse(lockfile.LOCK_PATH.read_text())
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue  # this environment has another version; its requirements may differ
        for text in dist.requires or []:
            req = Requirement(text)
            if lockfile._applies(req, ()):
                assert canonicalize_name(req.name) in pins, f"{name} needs {req.name}, which is not pinned"


def test_lock_parser_refuses_ranges() -> None:
    with pytest.raises(ValueError, match="exact pin"):
        lockfile.parse("celery>=5\n")


# ------------------------------------------------------------------ monitoring


def test_prometheus_scrapes_the_api_the_workers_and_the_beat_and_loads_the_rules() -> None:
    config = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["framefleet-api"]["dns_sd_configs"][0]
    assert (api["names"], api["port"]) == (["api"], 8000)
    # Every worker and beat service serves /metrics on all its interfaces at the port scraped, under a name
    # the scrape job resolves (the dev service's own name or the prod service's alias).
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for job, kinds, setting in (
        ("framefleet-workers", ("worker", "prod-worker", "gpu-worker"), "FRAMEFLEET_WORKER_METRICS_PORT"),
        ("framefleet-beat", ("beat", "prod-beat"), "FRAMEFLEET_BEAT_METRICS_PORT"),
        ("framefleet-webhooks", ("webhooks", "prod-webhooks"), "FRAMEFLEET_WEBHOOKS_METRICS_PORT"),
    ):
        (target,) = jobs[job]["dns_sd_configs"]
        for name in kinds:
            service = services[name]
            assert service["environment"][setting] == str(target["port"]), name
            assert service["environment"]["FRAMEFLEET_METRICS_HOST"] == "0.0.0.0", name
            aliases = service.get("networks", {}).get("default", {}).get("aliases", [])
            assert {name, *aliases} & set(target["names"]), name
    assert config["rule_files"] == ["alerts/*.yml"]
    assert list((ROOT / "config" / "alerts").glob("*.yml"))


def test_grafana_is_provisioned_with_the_datasource_its_dashboards_use() -> None:
    provisioning = ROOT / "config" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "framefleet.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    # Whether each query is valid and finds the series really exported is checked against a real Prometheus
    # that scraped a real stack: tests/integration/test_prometheus.py.
    dashboards = list((ROOT / "config" / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


# ------------------------------------------------------------------ entry points


def test_make_test_deploy_runs_the_harness_and_ci_calls_it_after_make_test() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test-deploy: \$\(STAMP\)\n\tbash tests/deploy/run.sh$", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test\n") < ci.index("make test-deploy")


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    """Every rule in config/alerts is valid and behaves as tests/deploy/alerts_test.yml says (promtool from
    Debian's `prometheus` package, installed by tests/setup/system-deps.sh)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: tests/setup/system-deps.sh installs the prometheus package"
    for argv in (
        [promtool, "check", "rules", *map(str, sorted((ROOT / "config" / "alerts").glob("*.yml")))],
        [promtool, "test", "rules", str(ROOT / "tests" / "deploy" / "alerts_test.yml")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
