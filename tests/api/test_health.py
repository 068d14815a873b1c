"""/healthz, /readyz, /metrics, the OpenAPI document, and what every request gets (id, log, problems)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from framefleet.api.app import create_app
from framefleet.config import Settings
from tests import services
from tests.api.conftest import submit


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_all_components_ok(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "components": {"database": {"status": "ok"}, "redis": {"status": "ok"}, "storage": {"status": "ok"}},
    }


def _readyz(settings: Settings) -> Any:
    with TestClient(create_app(settings)) as client:
        return client.get("/readyz")


def test_readyz_503_when_redis_is_down(api_settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    response = _readyz(api_settings.model_copy(update={"redis_url": dead}))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/unavailable"
    assert "redis" in problem["detail"]
    assert problem["components"]["redis"] == {"status": "error", "error": "ConnectionError"}
    assert problem["components"]["database"] == {"status": "ok"}


def test_metrics_report_each_dependency_up_or_down(api_settings: Settings) -> None:
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    for settings, redis_up in (
        (api_settings, 1.0),
        (api_settings.model_copy(update={"redis_url": dead}), 0.0),
    ):
        with TestClient(create_app(settings)) as client:
            response = client.get("/metrics")
        assert response.status_code == 200
        samples = {
            sample.labels["dependency"]: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "framefleet_dependency_up"
        }
        assert samples == {"database": 1.0, "redis": redis_up, "storage": 1.0}


def test_readyz_503_when_storage_root_is_missing(api_settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    settings = api_settings.model_copy(update={"storage_roots": [missing], "output_root": missing.as_uri()})
    response = _readyz(settings)

    assert response.status_code == 503
    components = response.json()["components"]
    assert components["storage"]["status"] == "error"
    assert components["redis"] == {"status": "ok"}


def test_metrics_exposition(client: TestClient, auth: dict[str, str]) -> None:
    job = submit(client, auth, priority="low")
    client.get(f"/v1/jobs/{job['id']}", headers=auth)
    client.get("/no/such/path")

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'jobs_submitted_total{priority="low"}' in text
    # Route templates, never raw paths, label the HTTP series.
    assert 'http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"}' in text
    assert 'http_requests_total{method="POST",route="/v1/jobs",status="201"}' in text
    assert 'route="unmatched",status="404"' in text
    assert job["id"] not in text
    assert 'http_request_duration_seconds_bucket{le="0.05",method="GET",route="/v1/jobs/{job_id}"}' in text


def test_openapi_and_docs(client: TestClient) -> None:
    spec = client.get("/v1/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events"):
        assert path in paths
    assert "JobSpec" in spec.json()["components"]["schemas"]
    alias = client.get("/openapi.json", follow_redirects=False)
    assert alias.status_code == 308
    assert alias.headers["location"] == "/v1/openapi.json"


def test_openapi_documents_errors_as_problem_json(client: TestClient) -> None:
    document = client.get("/v1/openapi.json").json()
    errors = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or not response.get("content"):
                    continue
                errors += 1
                assert list(response["content"]) == ["application/problem+json"], (path, method, status)
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ProblemView"}, (path, method, status)
    assert errors > 10
    # Every reference resolves: nothing points at FastAPI's default validation body, which is never sent.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"]), refs - set(document["components"]["schemas"])
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_the_internet(client: TestClient, page: str) -> None:
    # Air-gapped users: every script, stylesheet and icon the page names is served by the API itself.
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", html.text)
    assets += re.findall(r"""(?:url|openapi_url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
    assert assets, html.text
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from outside the API"
        assert client.get(asset).status_code == 200, asset


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"

    generated = client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32

    unsafe = client.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert unsafe.headers["X-Request-ID"] != "x" * 200


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):
            self.events.append(record.msg)


@pytest.fixture()
def log_events() -> Iterator[list[dict[str, Any]]]:
    """Structured events logged while the test runs (structlog event dicts)."""
    handler = _Records()
    # Not the root logger: create_app's logging set-up replaces the root's handlers.
    logger = logging.getLogger("framefleet")
    logger.addHandler(handler)
    yield handler.events
    logger.removeHandler(handler)


def test_access_log_line_carries_request_id(client: TestClient, log_events: list[dict[str, Any]]) -> None:
    client.get("/healthz", headers={"X-Request-ID": "trace-me"})

    lines = [e for e in log_events if e.get("event") == "request" and e.get("request_id") == "trace-me"]
    assert len(lines) == 1
    assert lines[0]["status"] == 200
    assert lines[0]["route"] == "/healthz"
    assert lines[0]["method"] == "GET"


def test_unexpected_error_is_a_bare_500_problem(
    api_settings: Settings, log_events: list[dict[str, Any]]
) -> None:
    app = create_app(api_settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/db")

    with TestClient(app) as client:
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Request-ID"] == "boom-1"
    assert response.json()["type"] == "https://framefleet.dev/problems/internal"
    assert "secret" not in response.text and "Traceback" not in response.text
    logged = [e for e in log_events if e.get("request_id") == "boom-1" and e.get("level") == "error"]
    assert logged and logged[0]["event"] == "unhandled error"


def test_unknown_route_and_wrong_method_are_problems(client: TestClient, auth: dict[str, str]) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "https://framefleet.dev/problems/not-found"

    wrong = client.delete("/v1/jobs", headers=auth)
    assert wrong.status_code == 405
    assert wrong.json()["type"] == "https://framefleet.dev/problems/method-not-allowed"
    assert wrong.headers["Allow"]
