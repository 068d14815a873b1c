"""Single sign-on: bearer JWTs verified against a JWKS served by a real local HTTP server, with keys made
here. The app under test is built with SSO settings of its own; the suite's database and Redis are shared."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from tests.api.conftest import KeyMaker

ISSUER = "https://idp.example/realms/media"
AUDIENCE = "framefleet"


@dataclass
class Provider:
    """An identity provider: signing keys by kid, the JWKS it publishes, and how often it was asked."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0

    def add_key(self, kid: str, *, kind: str = "rsa") -> None:
        if kind == "rsa":
            private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
            public["alg"] = "RS256"
        else:
            private = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
            public["alg"] = "ES256"
        self.keys[kid] = private
        self.published.append({**public, "kid": kid, "use": "sig"})

    def token(self, kid: str = "k1", *, algorithm: str = "RS256", key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice@example.org",
            "iat": now,
            "exp": now + 300,
            "tenant": "",
            "role": "member",
            **claims,
        }
        return jwt.encode(body, key or self.keys[kid], algorithm=algorithm, headers={"kid": kid})


@pytest.fixture()
def provider() -> Iterator[Provider]:
    idp = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            idp.hits += 1
            body = json.dumps({"keys": idp.published}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idp.url = f"http://127.0.0.1:{server.server_address[1]}/certs"
    idp.add_key("k1")
    yield idp
    server.shutdown()
    server.server_close()


def sso_client(provider: Provider, **overrides: Any) -> TestClient:
    settings = Settings(
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=provider.url,
        oidc_role_map={"media-admins": "admin"},
        api_key_cache_seconds=0,
        **overrides,
    )
    return TestClient(create_app(settings))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_acts_with_its_tenant_and_role(provider: Provider, make_key: KeyMaker) -> None:
    tenant = f"sso-{uuid.uuid4().hex[:8]}"
    key_headers = make_key(tenant=tenant, role="viewer")  # makes the tenant
    provider.add_key("ec1", kind="ec")
    with sso_client(provider) as client:
        member = provider.token(tenant=tenant, role="member")
        assert client.get("/v1/jobs", headers=bearer(member)).status_code == 200
        refused = client.get("/v1/tenants", headers=bearer(member))
        assert refused.status_code == 403, refused.text
        admin = provider.token(tenant=tenant, role="media-admins")
        assert client.get("/v1/tenants", headers=bearer(admin)).status_code == 200
        ec_token = provider.token("ec1", algorithm="ES256", tenant=tenant)
        assert client.get("/v1/jobs", headers=bearer(ec_token)).status_code == 200
        # API keys keep working beside tokens.
        assert client.get("/v1/jobs", headers=key_headers).status_code == 200

        # A token's subject is the actor in the audit log.
        bad = client.post("/v1/jobs", json={"input": 5}, headers=bearer(member))
        assert bad.status_code == 422
        client.app.state.audit_writer.flush()  # type: ignore[attr-defined]
        rows = client.get(
            "/v1/audit", params={"actor": "oidc:alice@example.org", "tenant": tenant}, headers=bearer(admin)
        ).json()["items"]
        assert [(r["action"], r["role"], r["tenant"]) for r in rows] == [("jobs.submit", "member", tenant)]


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("expired", "expired"),
        ("audience", "audience"),
        ("issuer", "issuer"),
        ("signature", "signature does not verify"),
        ("none", "algorithm 'none' is not allowed"),
        ("hmac", "algorithm 'HS256' is not allowed"),
        ("unknown kid", "not in the identity provider's key set"),
        ("garbage", "not a well-formed JWT"),
        ("not yet", "not valid yet"),
    ],
)
def test_a_bad_token_gets_401_saying_why(
    provider: Provider, make_key: KeyMaker, case: str, detail: str
) -> None:
    tenant = f"sso-{uuid.uuid4().hex[:8]}"
    make_key(tenant=tenant, role="viewer")
    now = int(time.time())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = {
        # Past the 30 s leeway.
        "expired": provider.token(tenant=tenant, iat=now - 600, exp=now - 60),
        "audience": provider.token(tenant=tenant, aud="someone-else"),
        "issuer": provider.token(tenant=tenant, iss="https://evil.example"),
        "signature": provider.token(tenant=tenant, key=other),
        "none": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60, "tenant": tenant, "role": "admin"},
            None,
            algorithm="none",
            headers={"kid": "k1"},
        ),
        # The classic confusion: the provider's public key used as an HMAC secret.
        "hmac": provider.token(tenant=tenant, algorithm="HS256", key=b"x" * 32),
        "unknown kid": provider.token("nope", key=other, tenant=tenant),
        "garbage": "a.b.c",
        "not yet": provider.token(tenant=tenant, nbf=now + 600),
    }
    with sso_client(provider) as client:
        answer = client.get("/v1/jobs", headers=bearer(tokens[case]))
    assert answer.status_code == 401, answer.text
    assert detail in answer.json()["detail"]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_an_unknown_role_or_tenant_gets_403(provider: Provider, make_key: KeyMaker) -> None:
    tenant = f"sso-{uuid.uuid4().hex[:8]}"
    make_key(tenant=tenant, role="viewer")
    with sso_client(provider) as client:
        role = client.get("/v1/jobs", headers=bearer(provider.token(tenant=tenant, role="janitor")))
        assert role.status_code == 403 and "janitor" in role.json()["detail"]
        stranger = client.get("/v1/jobs", headers=bearer(provider.token(tenant="no-such-tenant")))
        assert stranger.status_code == 403 and "no-such-tenant" in stranger.json()["detail"]


def test_a_rotated_key_is_picked_up_and_refetches_are_rate_limited(
    provider: Provider, make_key: KeyMaker
) -> None:
    tenant = f"sso-{uuid.uuid4().hex[:8]}"
    make_key(tenant=tenant, role="viewer")
    with sso_client(provider, oidc_jwks_refetch_seconds=1.0) as client:
        assert client.get("/v1/jobs", headers=bearer(provider.token(tenant=tenant))).status_code == 200
        assert provider.hits == 1
        # Made-up kids within the refetch interval do not make the API ask the provider again.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for _ in range(5):
            forged = provider.token("made-up", key=other, tenant=tenant)
            assert client.get("/v1/jobs", headers=bearer(forged)).status_code == 401
        assert provider.hits == 1

        time.sleep(1.1)
        provider.add_key("k2")  # the provider rotates
        rotated = provider.token("k2", tenant=tenant)
        assert client.get("/v1/jobs", headers=bearer(rotated)).status_code == 200, provider.hits
        assert provider.hits == 2


def test_half_or_unsafe_sso_settings_refuse_to_start() -> None:
    with pytest.raises(ValueError, match="needs all of"):
        Settings(oidc_issuer=ISSUER)
    with pytest.raises(ValueError, match="not allowed"):
        Settings(
            oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url="http://x/", oidc_algorithms=["HS256"]
        )
    with pytest.raises(ValueError, match="not allowed"):
        Settings(
            oidc_issuer=ISSUER, oidc_audience=AUDIENCE, oidc_jwks_url="http://x/", oidc_algorithms=["none"]
        )
