"""Console single sign-on in a real browser (Debian's chromium through Playwright): a real API (uvicorn) and a
tiny OIDC provider this test runs (discovery, an authorize endpoint that signs the person in at once and
redirects back with a code, a token endpoint checking the PKCE verifier and issuing RS256 JWTs signed with a
key made here, the JWKS). Sign in and see the tenant's jobs; a callback with a wrong state is refused; the
Jobs page's template filter (the stack has no worker: jobs stay queued, nothing is encoded)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa

from tests import services
from tests.conftest import library_uri

CLIENT_ID = "framefleet-console"
AUDIENCE = "framefleet"
TIMEOUT_MS = 30_000


@dataclass
class Provider:
    """The identity provider's state: who signs in, the codes it issued, what the token endpoint saw."""

    url: str = ""
    tenant: str = ""
    key: Any = None
    jwk: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[dict[str, str]] = field(default_factory=list)
    forged_state: str | None = None  # sent back instead of the client's state (an attacker's callback)

    def signed(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": "carol@example.org", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "console-k1"})


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture()
def provider() -> Iterator[Provider]:
    idp = Provider()
    idp.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp.jwk = {
        **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(idp.key.public_key())),
        "kid": "console-k1",
        "use": "sig",
        "alg": "RS256",
    }

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": idp.url,
                        "authorization_endpoint": f"{idp.url}/authorize",
                        "token_endpoint": f"{idp.url}/token",
                        "jwks_uri": f"{idp.url}/jwks",
                    },
                )
            elif url.path == "/jwks":
                self._json(200, {"keys": [idp.jwk]})
            elif url.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
                    self._json(400, {"error": "invalid_request"})
                    return
                # The person is signed in at once: a code bound to the challenge, nonce and redirect URI.
                code = secrets.token_urlsafe(16)
                idp.codes[code] = query
                state = idp.forged_state or query["state"]
                target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': state})}"
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            idp.exchanges.append(form)
            issued = idp.codes.pop(form.get("code", ""), None)
            if (
                issued is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != issued["redirect_uri"]
                or _s256(form.get("code_verifier", "")) != issued["code_challenge"]
            ):
                self._json(400, {"error": "invalid_grant", "error_description": "code or verifier wrong"})
                return
            access = idp.signed({"aud": AUDIENCE, "tenant": idp.tenant, "role": "member"})
            id_token = idp.signed({"aud": CLIENT_ID, "nonce": issued["nonce"]})
            self._json(200, {"access_token": access, "id_token": id_token, "token_type": "Bearer"})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    idp.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield idp
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class SsoStack:
    url: str
    tenant: str
    job_id: str
    other_job_id: str
    key: str  # an admin key of the tenant


@pytest.fixture()
def sso_stack(test_env: dict[str, str], provider: Provider) -> Iterator[SsoStack]:
    from framefleet.api.app import create_app
    from framefleet.config import Settings
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    tenant, other = f"sso-{uuid.uuid4().hex[:6]}", f"sso-{uuid.uuid4().hex[:6]}"
    with session_scope() as session:
        key, _ = create_key(session, tenant=tenant, role="admin")
        other_key, _ = create_key(session, tenant=other, role="admin")
    provider.tenant = tenant
    port = services.free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        public_url=url,
        oidc_issuer=provider.url,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=f"{provider.url}/jwks",
        oidc_client_id=CLIENT_ID,
        oidc_provider_name="Example ID",
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    job = {"input": library_uri("clip.mp4"), "outputs": [{"preset": "mobile-480p"}]}
    ids = []
    for headers in ({"X-API-Key": key}, {"X-API-Key": other_key}):
        made = httpx.post(f"{url}/v1/jobs", json=job, headers=headers, timeout=30)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    yield SsoStack(url=url, tenant=tenant, job_id=ids[0], other_job_id=ids[1], key=key)
    server.should_exit = True
    thread.join(15)


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    made = browser.new_context(viewport={"width": 1280, "height": 860})
    yield made
    made.close()


def test_sign_in_through_the_provider_shows_the_tenants_jobs(
    context: Any, sso_stack: SsoStack, provider: Provider
) -> None:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(sso_stack.url + "/console/jobs")
    page.wait_for_url("**/console/sign-in**")
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url("**/console/jobs")
    assert page.get_by_test_id("who").inner_text() == f"{sso_stack.tenant} · member"
    page.locator(f'tr[data-job="{sso_stack.job_id}"]').wait_for()
    assert page.locator(f'tr[data-job="{sso_stack.other_job_id}"]').count() == 0
    # The code was traded with the PKCE verifier (the provider checked it against the S256 challenge).
    assert len(provider.exchanges) == 1 and len(provider.exchanges[0]["code_verifier"]) >= 43
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["ff_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    # The session ends with the token (10 minutes), not after the key sessions' 8 hours.
    assert session["expires"] - time.time() < 11 * 60
    assert "ff_console_sso" not in cookies  # the login state is spent
    # The token in the session acts like a bearer token: the API answers the page's calls with it.
    state = page.evaluate("fetch('/v1/jobs').then((r) => r.status)")
    assert state == 200


def test_a_callback_with_a_wrong_state_is_refused(
    context: Any, sso_stack: SsoStack, provider: Provider
) -> None:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(sso_stack.url + "/console/sign-in")
    # The provider sends the browser back with another state than the one this browser sent.
    provider.forged_state = "forged"
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url("**/console/sso/callback**")
    assert "state does not match" in page.get_by_role("alert").inner_text()
    assert "ff_console" not in {c["name"] for c in context.cookies()}
    # A callback with no login state at all (another browser's code) is refused the same way.
    answer = httpx.get(f"{sso_stack.url}/console/sso/callback", params={"code": "x", "state": "y"})
    assert answer.status_code == 400
    assert provider.exchanges == []  # no code was ever traded


def sign_in(context: Any, stack: SsoStack, path: str) -> Any:
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(stack.url + path)
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url(f"**{path}")
    return page


def test_the_jobs_list_filters_by_template(context: Any, sso_stack: SsoStack) -> None:
    headers = {"X-API-Key": sso_stack.key}
    template = {
        "name": "promo",
        "parameters": {"input": {"type": "uri", "required": True}},
        "spec": {"input": "{{input}}", "outputs": [{"preset": "mobile-480p"}]},
    }
    made = httpx.post(f"{sso_stack.url}/v1/templates", json=template, headers=headers, timeout=30)
    assert made.status_code == 201, made.text
    call = {"template": "promo", "params": {"input": library_uri("clip.mp4")}}
    job = httpx.post(f"{sso_stack.url}/v1/jobs", json=call, headers=headers, timeout=30)
    assert job.status_code == 201, job.text
    from_template = job.json()["id"]

    page = sign_in(context, sso_stack, "/console/jobs?template=promo")
    row = page.locator(f'tr[data-job="{from_template}"]')
    row.wait_for()
    assert "promo v1" in row.inner_text()
    assert page.get_by_label("Template").input_value() == "promo"
    assert page.locator(f'tr[data-job="{sso_stack.job_id}"]').count() == 0  # made from a spec
    page.get_by_label("Template").fill("nothing-like-it")
    page.get_by_label("Template").press("Enter")
    page.get_by_text("No jobs match.").wait_for()
    assert "template=nothing-like-it" in page.url
    page.get_by_label("Template").fill("")
    page.get_by_label("Template").press("Enter")
    page.locator(f'tr[data-job="{sso_stack.job_id}"]').wait_for()
