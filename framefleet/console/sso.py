"""Console sign-in through the OIDC provider: authorization code with PKCE (S256).

Pure parts (the PKCE pair, the authorize URL, the sealed login state) plus two thin HTTP edges (the
discovery document and the token exchange). The provider's URLs are the operator's settings or come from
the discovery document at the configured issuer, never from a request, so they are fetched wherever they
point (an identity provider is often on the internal network), without following redirects.

The token the session keeps is the access token, checked by the API's own bearer path (issuer, audience,
signature, expiry, tenant and role claims); the ID token is checked against the same key set with the client
id as its audience and must carry the nonce this sign-in sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from framefleet.config import Settings
from framefleet.keys import Principal
from framefleet.tenancy.oidc import TokenVerifier

# The login state cookie: sent back on the provider's top-level redirect, so SameSite=Lax (Strict would
# not be sent on a navigation that started at the provider's site); only for the callback's path.
STATE_COOKIE = "ff_console_sso"
STATE_PATH = "/console/sso"
# A person has this long to sign in at the provider.
STATE_MAX_AGE_SECONDS = 600
FETCH_TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 1_000_000
DISCOVERY_TTL_SECONDS = 300.0


class ProviderError(Exception):
    """The provider answered something unusable, or could not be reached; `detail` is shown to the person."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Client:
    """The console as the provider's client."""

    issuer: str
    client_id: str
    client_secret: str | None
    provider_name: str
    scopes: str
    authorize_url: str | None
    token_url: str | None


def client_of(settings: Settings) -> Client | None:
    """The console's client settings; None when console single sign-on is off."""
    if settings.oidc_config() is None or not settings.oidc_client_id:
        return None
    return Client(
        issuer=str(settings.oidc_issuer),
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret or None,
        provider_name=settings.oidc_provider_name,
        scopes=settings.oidc_scopes,
        authorize_url=settings.oidc_authorize_url or None,
        token_url=settings.oidc_token_url or None,
    )


@dataclass(frozen=True)
class LoginState:
    """What the callback must find again: the state echoed, the ID token's nonce, the PKCE verifier."""

    state: str
    nonce: str
    verifier: str
    next: str


def new_login(next_path: str) -> LoginState:
    # 64 characters of the unreserved set: inside RFC 7636's 43..128.
    return LoginState(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(48),
        next=next_path,
    )


def challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(endpoint: str, *, client: Client, login: LoginState, redirect_uri: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "scope": client.scopes,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": challenge(login.verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


class StateCodec:
    """Seals the login state into a short-lived encrypted cookie (forged, stale or garbled opens to None)."""

    def __init__(self, secret_key: str) -> None:
        # Its own key: a session cookie is never taken for a login state, nor the other way round.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"framefleet console sso state")
        self._fernet = Fernet(base64.urlsafe_b64encode(derived.derive(secret_key.encode())))

    def seal(self, login: LoginState) -> str:
        payload = {"s": login.state, "n": login.nonce, "v": login.verifier, "x": login.next}
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, value: str | None) -> LoginState | None:
        if not value:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(value.encode(), ttl=STATE_MAX_AGE_SECONDS))
            return LoginState(
                state=payload["s"], nonce=payload["n"], verifier=payload["v"], next=payload["x"]
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    if len(response.content) > MAX_RESPONSE_BYTES:
        raise ProviderError(f"the provider's {what} is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(f"the provider's {what} is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(f"the provider's {what} is not a JSON object")
    return body


class Endpoints:
    """The authorize and token endpoints: from the settings, else the issuer's discovery document (cached)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._found: tuple[str, str] | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> tuple[str, str]:
        if self.client.authorize_url and self.client.token_url:
            return self.client.authorize_url, self.client.token_url
        with self._lock:
            if self._found is None or time.monotonic() - self._at >= DISCOVERY_TTL_SECONDS:
                self._found = self._discover()
                self._at = time.monotonic()
            authorize, token = self._found
        return self.client.authorize_url or authorize, self.client.token_url or token

    def _discover(self) -> tuple[str, str]:
        url = self.client.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ProviderError(f"the provider's discovery document cannot be fetched: {exc}") from exc
        body = _json(response, "discovery document")
        # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
        if body.get("issuer") != self.client.issuer:
            raise ProviderError("the provider's discovery document names another issuer")
        authorize, token = body.get("authorization_endpoint"), body.get("token_endpoint")
        if not all(isinstance(u, str) and u.startswith(("https://", "http://")) for u in (authorize, token)):
            raise ProviderError("the provider's discovery document lacks its authorize or token endpoint")
        return str(authorize), str(token)


@dataclass(frozen=True)
class Tokens:
    access_token: str
    id_token: str


def exchange(token_url: str, *, client: Client, code: str, verifier: str, redirect_uri: str) -> Tokens:
    """Trades the authorization code (and the PKCE verifier) for the tokens at the token endpoint."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client.client_id,
        "code_verifier": verifier,
    }
    auth = (client.client_id, client.client_secret) if client.client_secret else None
    try:
        response = httpx.post(
            token_url, data=form, auth=auth, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        raise ProviderError(f"the provider's token endpoint cannot be reached: {exc}") from exc
    body = _json(response, "token response")
    if response.status_code != 200:
        reason = body.get("error_description") or body.get("error") or f"HTTP {response.status_code}"
        raise ProviderError(f"the provider refused the sign-in: {str(reason)[:200]}")
    access, id_token = body.get("access_token"), body.get("id_token")
    if not isinstance(access, str) or not isinstance(id_token, str):
        raise ProviderError("the provider's token response lacks the access or ID token")
    return Tokens(access_token=access, id_token=id_token)


@dataclass(frozen=True)
class Sso:
    """Console single sign-on as installed on the app: the client, its endpoints, the login state's seal,
    the ID token's checker and the API's own bearer-token lookup (the same function the middleware uses)."""

    client: Client
    endpoints: Endpoints
    states: StateCodec
    id_tokens: TokenVerifier
    tokens: Callable[[str], Principal]


def setup(settings: Settings, *, tokens: Callable[[str], Principal] | None) -> Sso | None:
    client = client_of(settings)
    config = settings.oidc_config()
    if client is None or config is None or tokens is None:
        return None
    return Sso(
        client=client,
        endpoints=Endpoints(client),
        states=StateCodec(settings.secret_key),
        id_tokens=TokenVerifier(config),
        tokens=tokens,
    )
