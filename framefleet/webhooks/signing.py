"""Webhook signatures (pure): HMAC-SHA256 over `<timestamp>.<body>`, sent as

    FrameFleet-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex with the previous secret>]

A receiver recomputes the HMAC with its secret (the whole `whsec_...` string is the key), accepts the
request when any v1 matches, and refuses a timestamp further than its tolerance from its clock (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER = "FrameFleet-Signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale, or matches no secret."""


def new_secret() -> str:
    """A fresh signing secret (256 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def header_value(secrets_in_use: list[str], timestamp: int, body: bytes) -> str:
    """The signature header: one v1 per secret (the current one first, then one still in its grace)."""
    parts = [f"t={timestamp}"] + [f"v1={signature(s, timestamp, body)}" for s in secrets_in_use]
    return ",".join(parts)


def verify(
    body: bytes,
    header: str | None,
    secret: str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a delivery the way a receiver should; the signed timestamp, or SignatureError."""
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {HEADER} header")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("timestamp outside the tolerance (a replay, or a clock far off)")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no signature matches the secret")
    return timestamp
