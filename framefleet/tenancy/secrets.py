"""Secrets at rest: authenticated encryption (Fernet: AES-128-CBC + HMAC-SHA256) keyed from
FRAMEFLEET_SECRET_KEY.

FRAMEFLEET_SECRET_KEY holds one passphrase, or several separated by commas, newest first. Each passphrase
is stretched into a Fernet key with HKDF-SHA256 (it need not be a Fernet key itself). The newest encrypts;
every listed one decrypts, so rotating means: put the new passphrase first, keep the old one after it,
re-encrypt what is stored (`rotate`), then drop the old one.

Every stored secret goes through these helpers, so the database never holds one in plaintext; the columns
that hold their tokens are listed in framefleet/tenancy/secret_store.py, which `framefleet secrets rotate`
walks.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Fixed, public context for HKDF: binds derived keys to this use (another use would take another label).
HKDF_INFO = b"framefleet secrets at rest v1"
HKDF_SALT = b"framefleet"


class SecretError(ValueError):
    """A stored secret that none of the configured keys can open (wrong key, or tampered)."""


def passphrases(secret_key: str) -> list[str]:
    """The configured passphrases, newest first (comma-separated in FRAMEFLEET_SECRET_KEY)."""
    found = [part.strip() for part in secret_key.split(",") if part.strip()]
    if not found:
        raise ValueError("FRAMEFLEET_SECRET_KEY is empty")
    return found


def derive_key(passphrase: str) -> bytes:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from one passphrase."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=HKDF_SALT, info=HKDF_INFO).derive(
        passphrase.encode()
    )
    return base64.urlsafe_b64encode(raw)


def cipher(secret_key: str) -> MultiFernet:
    """Encrypts with the newest passphrase's key, decrypts with any configured one."""
    return MultiFernet([Fernet(derive_key(p)) for p in passphrases(secret_key)])


def encrypt(plaintext: str, *, secret_key: str) -> str:
    """An opaque token (ASCII) to store instead of `plaintext`."""
    return cipher(secret_key).encrypt(plaintext.encode()).decode("ascii")


def decrypt(token: str, *, secret_key: str) -> str:
    """The plaintext of a stored token; SecretError when no configured key opens it."""
    try:
        return cipher(secret_key).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretError("the stored secret cannot be decrypted with FRAMEFLEET_SECRET_KEY") from exc


def is_current(token: str, *, secret_key: str) -> bool:
    """Whether `token` is already encrypted under the newest key (a rotation pass leaves it as it is)."""
    try:
        Fernet(derive_key(passphrases(secret_key)[0])).decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


def rotate(token: str, *, secret_key: str) -> str:
    """The same secret encrypted under the newest key (what a re-encryption pass stores back)."""
    try:
        return cipher(secret_key).rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretError("the stored secret cannot be decrypted with FRAMEFLEET_SECRET_KEY") from exc
