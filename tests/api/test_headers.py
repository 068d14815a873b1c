"""HTTP hygiene: security headers on every answer, HSTS only behind TLS, CORS off unless origins are listed,
and the offline /docs still served with those headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings

BASE = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _has_base(headers: object) -> bool:
    return all(headers.get(name) == value for name, value in BASE.items())  # type: ignore[attr-defined]


def test_every_kind_of_answer_carries_the_headers(client: TestClient, auth: dict[str, str]) -> None:
    for response in (
        client.get("/healthz"),
        client.get("/v1/jobs", headers=auth),
        client.get("/v1/jobs"),  # 401 from the auth middleware
        client.get("/no/such/path"),  # 404
        client.get("/v1/openapi.json"),
        client.get("/docs"),
    ):
        assert _has_base(response.headers), (response.request.url, dict(response.headers))
        assert "strict-transport-security" not in response.headers  # plain http, no https public URL


def test_hsts_over_tls_or_behind_an_https_public_url(api_settings: Settings) -> None:
    with TestClient(create_app(api_settings), base_url="https://testserver") as tls:
        assert tls.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    public = api_settings.model_copy(update={"public_url": "https://transcode.example"})
    with TestClient(create_app(public)) as behind_gateway:
        assert "max-age=31536000" in behind_gateway.get("/healthz").headers["strict-transport-security"]


def test_docs_page_and_its_assets_still_load(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "content-security-policy" not in page.headers  # nothing that would block its inline script
    asset = client.get("/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and _has_base(asset.headers)


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_listed_origins(api_settings: Settings, auth: dict[str, str]) -> None:
    settings = api_settings.model_copy(update={"cors_origins": ["https://console.example"]})
    with TestClient(create_app(settings)) as client:
        allowed = client.get("/v1/jobs", headers={**auth, "Origin": "https://console.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://console.example"
        other = client.get("/v1/jobs", headers={**auth, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = client.options(
            "/v1/jobs",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "X-API-Key, Content-Type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://console.example"
        refused = client.options(
            "/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_a_wildcard_origin_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="CORS"):
        Settings(cors_origins=["*"])
