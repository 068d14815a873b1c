"""The Kubernetes manifests (deploy/kubernetes): each overlay rendered by `kubectl kustomize`, every object
checked against the Kubernetes schemas (kubernetes-validate) or KEDA's (tests/deploy/keda), and the rules
that tie them to the code: KEDA's triggers watch exactly the queues the workers consume, the stop grace
covers the worker's shutdown grace, probes, secrets, non-root pods, GPU scheduling."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from framefleet.cli.supervisor import WORKER_STOP_MARGIN_SECONDS
from framefleet.config import Settings
from framefleet.queues import POOLS, queues_for_pool
from framefleet.scheduling.broker import queue_keys

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod", "gpu")
# The oldest Kubernetes release the manifests target, and the newest the schemas know.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
KEDA_SCHEMAS = {
    kind: json.loads((ROOT / "tests" / "deploy" / "keda" / f"{kind.lower()}.schema.json").read_text())
    for kind in ("ScaledObject", "TriggerAuthentication")
}
FRAMEFLEET_IMAGES = ("/framefleet:", "/framefleet-gpu:")
# The Secret keys the manifests read (docs/scaling.md lists them for operators).
SECRET_KEYS = {
    "framefleet_secret_key",
    "framefleet_database_url",
    "framefleet_redis_url",
    "flower_basic_auth",
    "redis_address",
    "redis_password",
    "aws_credentials",
}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is needed to render deploy/kubernetes (kubectl kustomize); install kubectl")
    return found


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's objects, as `kubectl kustomize` renders them."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(objects: tuple[dict[str, Any], ...]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def framefleet_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in spec["containers"] if any(tag in c["image"] for tag in FRAMEFLEET_IMAGES)]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def workers(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """The worker Deployments by the pool their command line names."""
    found = {}
    for deployment in of_kind(objects, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        if container.get("args", [])[:1] == ["worker"]:
            found[option(container["args"], "--pool")] = deployment
    return found


def config(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (configmap,) = of_kind(objects, "ConfigMap")
    return dict(configmap["data"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_and_keda_schemas(overlay: str) -> None:
    objects = render(overlay)
    assert objects
    for obj in objects:
        where = f"{overlay}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("keda.sh/"):
            errors = list(jsonschema.Draft202012Validator(KEDA_SCHEMAS[obj["kind"]]).iter_errors(obj))
            assert not errors, f"{where}: {[e.message for e in errors]}"
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} (Kubernetes {version}): {exc.message} at {list(exc.path)}")


def test_the_schema_checks_can_fail() -> None:
    """A misspelt field and a trigger without its list are refused (the checks above are not vacuous)."""
    (scaled,) = of_kind(render("prod"), "ScaledObject")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicas"] = 3
    del broken["spec"]["triggers"][0]["metadata"]["listName"]
    errors = list(jsonschema.Draft202012Validator(KEDA_SCHEMAS["ScaledObject"]).iter_errors(broken))
    assert len(errors) == 2
    deployment = json.loads(json.dumps(named(render("prod"), "Deployment", "framefleet-api")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pool_scales_on_exactly_the_queues_its_workers_consume(overlay: str) -> None:
    objects = render(overlay)
    pools = workers(objects)
    expected_pools = set(POOLS) if overlay == "gpu" else {"cpu"}
    assert set(pools) == expected_pools
    scaled_objects = of_kind(objects, "ScaledObject")
    assert len(scaled_objects) == len(pools)
    for scaled in scaled_objects:
        target = scaled["spec"]["scaleTargetRef"]["name"]
        (pool,) = [pool for pool, deployment in pools.items() if deployment["metadata"]["name"] == target]
        # What `framefleet worker --pool P` consumes, highest priority first, and the Redis list of each.
        consumed = [queue_keys(q.name)[0] for q in queues_for_pool(pool)]
        triggers = scaled["spec"]["triggers"]
        assert [t["metadata"]["listName"] for t in triggers] == consumed, target
        assert {t["type"] for t in triggers} == {"redis"}
        for trigger in triggers:
            auth = named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
            assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"address", "password"}
        assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stop_grace_periods_cover_the_shutdown_each_process_does(overlay: str) -> None:
    objects = render(overlay)
    settings = config(objects)
    shutdown_grace = float(settings["FRAMEFLEET_SHUTDOWN_GRACE_SECONDS"])
    assert shutdown_grace == Settings.model_fields["shutdown_grace_seconds"].default
    for pool, deployment in workers(objects).items():
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        # SIGTERM itself starts the drain: a preStop hook would only eat into the grace.
        assert "lifecycle" not in container, pool
        # The job finishes within the grace, or ffmpeg is stopped and the job handed back; then Celery exits.
        assert spec["terminationGracePeriodSeconds"] >= shutdown_grace + WORKER_STOP_MARGIN_SECONDS + 10
    api = named(objects, "Deployment", "framefleet-api")["spec"]["template"]["spec"]
    (container,) = api["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert api["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + 15


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_is_probed_autoscaled_and_kept_available(overlay: str) -> None:
    objects = render(overlay)
    api = named(objects, "Deployment", "framefleet-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["api"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = container["ports"][0]["containerPort"]
    assert port == int(config(objects)["FRAMEFLEET_API_PORT"])
    hpa = named(objects, "HorizontalPodAutoscaler", "framefleet-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "framefleet-api"
    assert hpa["spec"]["minReplicas"] == api["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    pdb = named(objects, "PodDisruptionBudget", "framefleet-api")
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    if overlay != "dev":
        assert api["spec"]["replicas"] >= 2 and pdb["spec"]["minAvailable"] >= 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beat_flower_and_migrations_are_there(overlay: str) -> None:
    objects = render(overlay)
    beat = named(objects, "Deployment", "framefleet-beat")
    # Two beats are safe: a Redis lock elects the one leader.
    assert beat["spec"]["replicas"] == 2
    assert beat["spec"]["template"]["spec"]["containers"][0]["args"] == ["beat"]
    flower = named(objects, "Deployment", "framefleet-flower")["spec"]["template"]["spec"]["containers"][0]
    assert flower["args"] == ["flower"]
    assert {"name": "FLOWER_BASIC_AUTH_FILE", "value": "/run/secrets/framefleet/flower_basic_auth"} in flower[
        "env"
    ]
    migrate = named(objects, "Job", "framefleet-migrate")
    assert migrate["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_unprivileged_and_read_secrets_from_a_secret_volume(overlay: str) -> None:
    objects = render(overlay)
    secrets = {obj["metadata"]["name"]: obj for obj in of_kind(objects, "Secret")}
    for where, spec in pod_specs(objects):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
        for container in framefleet_containers(spec):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            for env in container.get("env", []):
                # Secrets arrive as files (the entrypoint's NAME_FILE), never as values in the pod spec.
                assert "value" in env, where
                assert not env["name"].endswith(("_SECRET_KEY", "_URL", "_PASSWORD")), where
                if env["name"].endswith("_FILE"):
                    assert env["value"].startswith("/run/secrets/framefleet/"), where
                    assert env["value"].rsplit("/", 1)[1] in SECRET_KEYS
        for volume in spec.get("volumes", []):
            if "secret" in volume and volume["secret"]["secretName"] in secrets:
                data = secrets[volume["secret"]["secretName"]]["data"]
                assert set(data) == SECRET_KEYS, where
    for auth in of_kind(objects, "TriggerAuthentication"):
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["key"] in SECRET_KEYS
    if overlay != "dev":
        assert not secrets, "production overlays ship no Secret: the operator creates framefleet-secrets"


def test_the_gpu_pool_asks_for_a_gpu_on_gpu_nodes_and_prod_has_no_gpu_pool() -> None:
    deployment = workers(render("gpu"))["gpu"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "/framefleet-gpu:" in container["image"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert "video" in {e["name"]: e["value"] for e in container["env"]}["NVIDIA_DRIVER_CAPABILITIES"]
    assert "gpu" not in workers(render("prod"))
    for other in workers(render("gpu")).values():
        assert other is deployment or "nodeSelector" not in other["spec"]["template"]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lives_in_the_overlay_namespace(overlay: str) -> None:
    objects = render(overlay)
    (namespace,) = of_kind(objects, "Namespace")
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_manifests_name_only_framefleet_settings() -> None:
    fields = set(Settings.model_fields)
    for overlay in OVERLAYS:
        for name in config(render(overlay)):
            if name.startswith("FRAMEFLEET_"):
                assert name.removeprefix("FRAMEFLEET_").lower() in fields, name
        # The values load: the settings' validation accepts them (the real secret key comes from the Secret).
        values = {k.removeprefix("FRAMEFLEET_").lower(): v for k, v in _settings_values(overlay).items()}
        Settings(**{**values, "secret_key": "k" * 32})


def _settings_values(overlay: str) -> dict[str, Any]:
    """The ConfigMap's FRAMEFLEET_* values as pydantic-settings would decode them (lists are JSON)."""
    values: dict[str, Any] = {}
    for name, value in config(render(overlay)).items():
        if name.startswith("FRAMEFLEET_"):
            values[name] = json.loads(value) if value.startswith("[") else value
    return values
