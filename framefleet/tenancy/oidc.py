"""Single sign-on: `Authorization: Bearer <JWT>` issued by an OIDC identity provider.

A token is accepted when its signature verifies with a key of the provider's JWKS (an asymmetric algorithm
from the configured list, never `none` or an HMAC one, which would let a public key sign), and its issuer,
audience, expiry and not-before (each with a small leeway) are right. The tenant and the role come from
configurable claims; the role value is mapped onto admin/operator/member/viewer.

The JWKS is cached for `jwks_ttl_seconds`. A token whose `kid` the cache does not hold triggers one refetch
(at most one per `jwks_refetch_seconds`, so tokens with made-up kids cannot make the API hammer the
provider): a provider that rotates its keys is picked up at once.

The JWKS URL is the operator's setting, so it is fetched wherever it points, internal addresses included
(an identity provider is often on the internal network); redirects are not followed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from framefleet.tenancy.permissions import ALIASES, ROLES

# Asymmetric algorithms only: with an HMAC one, the provider's public key would be the shared secret.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
FETCH_TIMEOUT_SECONDS = 5.0
MAX_JWKS_BYTES = 1_000_000


class TokenError(Exception):
    """The token is not acceptable (401); `detail` says why, for the client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TokenRefused(Exception):
    """The token is valid but names a role or tenant this installation does not grant (403)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class JwksUnavailable(Exception):
    """The provider's key set cannot be fetched now (503: the token may well be good)."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    # The provider's role values onto FrameFleet's roles; a value that is a FrameFleet role maps to itself.
    role_map: Mapping[str, str] = field(default_factory=dict)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: float = 30.0
    jwks_ttl_seconds: float = 300.0
    jwks_refetch_seconds: float = 30.0

    def __post_init__(self) -> None:
        refused = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if refused or not self.algorithms:
            raise ValueError(
                f"FRAMEFLEET_OIDC_ALGORITHMS: {', '.join(refused) or '(none)'} not allowed; "
                f"use asymmetric ones ({', '.join(sorted(ALLOWED_ALGORITHMS))})"
            )
        for value, role in self.role_map.items():
            if role not in ROLES:
                raise ValueError(f"FRAMEFLEET_OIDC_ROLE_MAP: {value!r} maps to {role!r}, not one of {ROLES}")


@dataclass(frozen=True)
class Identity:
    """Who a verified token names: its subject, tenant name and FrameFleet role."""

    subject: str
    tenant: str
    role: str
    expires_at: float


Fetch = Callable[[str], dict[str, Any]]


def fetch_jwks(url: str) -> dict[str, Any]:
    """The key set at `url` (no redirects, bounded time and size)."""
    try:
        response = httpx.get(url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False)
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise JwksUnavailable(f"the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise JwksUnavailable(f"the JWKS at {url} cannot be fetched: {type(exc).__name__}: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        raise JwksUnavailable(f"the JWKS at {url} has no `keys` list")
    return body


class JwksCache:
    """The provider's signing keys by kid, refreshed after a TTL and, rate-limited, on an unknown kid."""

    def __init__(self, config: OidcConfig, *, fetch: Fetch = fetch_jwks) -> None:
        self.config = config
        self.fetch = fetch
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _refresh(self, now: float) -> None:
        data = self.fetch(self.config.jwks_url)
        self.fetches += 1
        self._fetched_at = now
        keys: dict[str, jwt.PyJWK] = {}
        for entry in data["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "kid" not in entry:
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this library cannot use; the others still count
        self._keys = keys

    def key(self, kid: str) -> jwt.PyJWK:
        """The signing key `kid`; TokenError when the provider does not (or no longer) have it."""
        with self._lock:
            now = time.monotonic()
            if self._fetched_at is None or now - self._fetched_at >= self.config.jwks_ttl_seconds:
                self._refresh(now)
            elif kid not in self._keys and now - self._fetched_at >= self.config.jwks_refetch_seconds:
                self._refresh(now)  # perhaps the provider rotated its keys
            found = self._keys.get(kid)
        if found is None:
            raise TokenError(f"the token's signing key {kid!r} is not in the identity provider's key set")
        return found


def looks_like_jwt(raw: str) -> bool:
    """A compact JWS has three dot-separated parts (an `ff_` API key never does)."""
    return raw.count(".") == 2 and len(raw) <= 16_384


class TokenVerifier:
    """Verifies bearer tokens against one provider's configuration and key set."""

    def __init__(self, config: OidcConfig, *, jwks: JwksCache | None = None) -> None:
        self.config = config
        self.jwks = jwks or JwksCache(config)

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; TokenError (401) saying what is wrong, JwksUnavailable (503)."""
        config = self.config
        claims = self.claims(token, audience=config.audience)
        return Identity(
            subject=str(claims["sub"]),
            tenant=self._claim(claims, config.tenant_claim),
            role=self._claim(claims, config.role_claim),
            expires_at=float(claims["exp"]) + config.leeway_seconds,
        )

    def claims(self, token: str, *, audience: str) -> dict[str, Any]:
        """A token's claims once its algorithm, key, signature, issuer, `audience` and times check out
        (the console's ID token is checked here with the client id as its audience)."""
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the bearer token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in config.algorithms:
            allowed = ", ".join(config.algorithms)
            raise TokenError(f"the token's algorithm {algorithm!r} is not allowed (allowed: {allowed})")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenError("the token's header has no `kid` naming its signing key")
        key = self.jwks.key(kid)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenError(f"the token's audience is not {audience!r}") from None
        except jwt.InvalidIssuerError:
            raise TokenError(f"the token's issuer is not {config.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the token is not valid: {exc}") from None
        return claims

    @staticmethod
    def _claim(claims: dict[str, Any], name: str) -> str:
        """A claim by name; a dotted name reaches into objects (e.g. `realm_access.role`)."""
        value: Any = claims
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value if isinstance(value, str) else ""


def map_role(config: OidcConfig, value: str) -> str | None:
    """FrameFleet's role for the token's role claim value; None for one that maps to none (403)."""
    if value in config.role_map:
        return config.role_map[value]
    if value in ROLES:
        return value
    return ALIASES.get(value)
