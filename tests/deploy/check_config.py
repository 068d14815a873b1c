"""Rules every resolved compose configuration must follow, per set of profiles.

Used two ways: tests/deploy/test_static.py resolves compose.yaml itself (profiles, `${VAR:-default}`) and
checks the result, and tests/deploy/run.sh checks what `podman-compose config` resolves:

    python -m tests.deploy.check_config RESOLVED.yaml PROFILE...
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DEV_SERVICES = {
    "redis",
    "postgres",
    "minio",
    "s3-init",
    "migrate",
    "api",
    "worker",
    "beat",
    "webhooks",
    "flower",
}
PROD_SERVICES = {
    "gateway",
    "prod-postgres",
    "prod-redis",
    "prod-migrate",
    "prod-api",
    "prod-worker",
    "prod-beat",
    "prod-webhooks",
    "prod-flower",
}
PROFILE_SERVICES = {
    "dev": DEV_SERVICES,
    "prod": PROD_SERVICES,
    "gpu": {"gpu-worker"},
    "monitoring": {"prometheus", "grafana"},
}
ONE_SHOTS = {"s3-init", "migrate", "prod-migrate"}
# Services built from docker/Dockerfile*, which must run hardened.
APP_IMAGE = re.compile(r"(^|/)framefleet(-gpu)?:")
_DEFAULT = re.compile(r"\$\{([A-Za-z0-9_]+)(?::?-([^}]*))?\}")


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    """compose.yaml as YAML (anchors and merge keys resolved by the loader)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """`${VAR:-default}` / `${VAR}` replaced from env or the default, recursively; `$$` unescaped."""
    env = env or {}
    if isinstance(value, str):
        text = _DEFAULT.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
        return text.replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def resolve(compose: dict[str, Any], profiles: set[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """What compose runs for `profiles`: services enabled by them (or without profiles), interpolated."""
    services = {
        name: service
        for name, service in compose["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & profiles
    }
    return interpolate({**compose, "services": services}, env)


def _published(service: dict[str, Any]) -> list[str]:
    return [
        str(p) if not isinstance(p, dict) else f"{p.get('host_ip', '')}:{p.get('published')}"
        for p in service.get("ports", [])
    ]


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def problems(config: dict[str, Any], profiles: set[str]) -> list[str]:
    """Every way `config` (resolved for `profiles`) breaks the deployment rules; empty when it is fine."""
    found: list[str] = []
    services: dict[str, Any] = config.get("services", {})
    expected = set().union(*(PROFILE_SERVICES[p] for p in profiles))
    if set(services) != expected:
        found.append(f"services for {sorted(profiles)}: {sorted(services)} != {sorted(expected)}")
    text = yaml.safe_dump(config)
    if "${" in text:
        found.append("an interpolation was left unresolved")
    secrets = config.get("secrets") or {}
    for name, service in services.items():
        where = f"service {name}"
        if not service.get("image"):
            found.append(f"{where} has no image")
        if APP_IMAGE.search(str(service.get("image", ""))):
            if service.get("read_only") is not True:
                found.append(f"{where} does not run with a read-only root filesystem")
            if "ALL" not in (service.get("cap_drop") or []):
                found.append(f"{where} keeps Linux capabilities")
            if "no-new-privileges:true" not in (service.get("security_opt") or []):
                found.append(f"{where} may gain privileges")
            if name not in ONE_SHOTS and not service.get("healthcheck"):
                found.append(f"{where} has no healthcheck")
        for dep, condition in _depends(service).items():
            if dep not in services:
                found.append(f"{where} depends on {dep}, which {sorted(profiles)} does not start")
            elif dep in ONE_SHOTS and condition != "service_completed_successfully":
                found.append(f"{where} must wait for {dep} to complete")
            elif dep not in ONE_SHOTS and condition != "service_healthy":
                found.append(f"{where} must wait for {dep} to be healthy")
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret.get("source")
            if secret_name not in secrets:
                found.append(f"{where} uses undeclared secret {secret_name}")
        for variable, value in (service.get("environment") or {}).items():
            if variable.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                secret_name = str(value).removeprefix("/run/secrets/")
                used = {s if isinstance(s, str) else s.get("source") for s in service.get("secrets") or []}
                if secret_name not in used:
                    found.append(f"{where} reads {value} but does not mount that secret")
    if "prod" in profiles:
        for name in PROD_SERVICES & set(services):
            service = services[name]
            where = f"prod service {name}"
            published = _published(service)
            if name == "gateway":
                if not published:
                    found.append("the gateway publishes no port")
            elif name == "prod-flower":
                if any(not p.startswith("127.0.0.1:") for p in published):
                    found.append("Flower is published beyond the host's loopback")
            elif published:
                found.append(f"{where} publishes {published}: only the gateway may")
            if name not in ONE_SHOTS and service.get("restart") not in ("unless-stopped", "always"):
                found.append(f"{where} has no restart policy")
            if not (service.get("deploy") or {}).get("resources", {}).get("limits"):
                found.append(f"{where} has no resource limits")
            if name not in ONE_SHOTS and not service.get("healthcheck"):
                found.append(f"{where} has no healthcheck")
            environment = service.get("environment") or {}
            if APP_IMAGE.search(str(service.get("image", ""))):
                if environment.get("FRAMEFLEET_ENV") != "prod":
                    found.append(f"{where} does not run with FRAMEFLEET_ENV=prod")
                for secret in ("FRAMEFLEET_SECRET_KEY", "FRAMEFLEET_DATABASE_URL", "FRAMEFLEET_REDIS_URL"):
                    if secret in environment:
                        found.append(f"{where} sets {secret} in its environment instead of a secret file")
        redis = services.get("prod-redis", {})
        if "--appendonly" not in redis.get("command", []) or "yes" not in redis.get("command", []):
            found.append("prod Redis does not persist with AOF")
    if "gpu" in profiles:
        devices = (
            services.get("gpu-worker", {})
            .get("deploy", {})
            .get("resources", {})
            .get("reservations", {})
            .get("devices", [])
        )
        if not any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices):
            found.append("the gpu worker reserves no NVIDIA GPU")
        if not any("video" in d.get("capabilities", []) for d in devices):
            found.append("the gpu worker lacks the `video` driver capability NVENC/NVDEC need")
    return found


def main(argv: list[str]) -> int:
    """Check a resolved configuration file against the rules for the given profiles."""
    if len(argv) < 2:
        print("usage: python -m tests.deploy.check_config RESOLVED.yaml PROFILE...", file=sys.stderr)
        return 2
    config = yaml.safe_load(Path(argv[0]).read_text())
    found = problems(config, set(argv[1:]))
    for problem in found:
        print(f"compose config ({' '.join(argv[1:])}): {problem}", file=sys.stderr)
    if not found:
        print(f"compose config for profiles {' '.join(argv[1:])}: {len(config['services'])} services, ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
