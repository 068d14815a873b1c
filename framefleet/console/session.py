"""The console's sign-in session (pure): an encrypted cookie holding the caller's credential and CSRF token.

The browser keeps the credential (an API key or a single sign-on token) only inside this cookie, which is
HttpOnly (no script can read it), SameSite=Strict and encrypted and authenticated with a key derived from the
installation's secret key: the authentication middleware decrypts it and checks the credential exactly as
if it had come in X-API-Key, so the console has no authorization logic of its own. State-changing calls must
also echo the session's CSRF token in a header (or a form field), which a cross-site page cannot read.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import cookie_parser

COOKIE = "ff_console"
# The sign-in form's own token (login CSRF): set with the form, echoed in it, compared on POST.
FORM_COOKIE = "ff_console_form"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# A console session lasts a working day; the credential's own expiry still applies on every request.
MAX_AGE_SECONDS = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class ConsoleSession:
    credential: str  # what X-API-Key or `Authorization: Bearer` would carry
    csrf: str
    via: str  # "key" or "sso": how the person signed in (shown, and sign-out goes back the same way)
    # A single sign-on session ends with its token (epoch seconds); a key session after MAX_AGE_SECONDS.
    expires_at: float | None = None


def new_session(credential: str, *, via: str, expires_at: float | None = None) -> ConsoleSession:
    """A session for `credential` with a fresh CSRF token."""
    return ConsoleSession(
        credential=credential, csrf=secrets.token_urlsafe(32), via=via, expires_at=expires_at
    )


class SessionCodec:
    """Seals sessions into cookie values and opens them (expired, forged or garbled values open to None)."""

    def __init__(self, secret_key: str, *, max_age_seconds: int = MAX_AGE_SECONDS) -> None:
        # Its own key derived from the secret: a console cookie is never mistaken for another sealed value.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"framefleet console session")
        self._fernet = Fernet(base64.urlsafe_b64encode(derived.derive(secret_key.encode())))
        self.max_age_seconds = max_age_seconds

    def seal(self, session: ConsoleSession) -> str:
        payload = {"k": session.credential, "c": session.csrf, "v": session.via, "e": session.expires_at}
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, value: str | None) -> ConsoleSession | None:
        if not value:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(value.encode(), ttl=self.max_age_seconds))
            expires_at = payload.get("e")
            if expires_at is not None and time.time() >= float(expires_at):
                return None
            return ConsoleSession(
                credential=payload["k"], csrf=payload["c"], via=payload["v"], expires_at=expires_at
            )
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None


def csrf_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison of the session's token with the one a request echoed."""
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())


def cookie_value(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    """One cookie's value from raw ASGI headers (the middleware runs before any request object exists)."""
    for header, value in headers:
        if header == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for header, value in headers:
        if header == name:
            return value.decode("latin-1")
    return None
