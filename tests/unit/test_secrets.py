"""Secrets at rest: authenticated encryption from FRAMEFLEET_SECRET_KEY, rotation, and prod refusing a
placeholder key."""

from __future__ import annotations

import pytest

from framefleet.config import Settings
from framefleet.tenancy.secrets import SecretError, decrypt, derive_key, encrypt, passphrases, rotate

OLD = "old passphrase 0f9c"
NEW = "new passphrase 77aa"


def test_round_trip_and_no_plaintext_in_the_token() -> None:
    token = encrypt("s3cr3t-signing-key", secret_key=OLD)
    assert "s3cr3t" not in token
    assert token != encrypt("s3cr3t-signing-key", secret_key=OLD)  # random IV each time
    assert decrypt(token, secret_key=OLD) == "s3cr3t-signing-key"


def test_a_wrong_key_or_a_tampered_token_is_refused() -> None:
    token = encrypt("value", secret_key=OLD)
    with pytest.raises(SecretError):
        decrypt(token, secret_key=NEW)
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretError):
        decrypt(tampered, secret_key=OLD)


def test_rotation_newest_first_decrypts_old_tokens_and_re_encrypts_them() -> None:
    old_token = encrypt("value", secret_key=OLD)
    both = f"{NEW}, {OLD}"
    assert passphrases(both) == [NEW, OLD]
    assert decrypt(old_token, secret_key=both) == "value"
    fresh = rotate(old_token, secret_key=both)
    # After the pass, the old passphrase can be dropped.
    assert decrypt(fresh, secret_key=NEW) == "value"
    with pytest.raises(SecretError):
        decrypt(fresh, secret_key=OLD)


def test_keys_are_derived_not_used_raw() -> None:
    assert derive_key(OLD) != derive_key(NEW)
    assert len(derive_key("short")) == 44  # a valid Fernet key from any passphrase


@pytest.mark.parametrize("placeholder", ["", "change-me", "dev-secret", "changeme"])
def test_prod_refuses_a_missing_or_placeholder_key(placeholder: str) -> None:
    with pytest.raises(ValueError, match="FRAMEFLEET_SECRET_KEY"):
        Settings(env="prod", secret_key=placeholder)
    assert Settings(env="prod", secret_key="a real secret").env == "prod"
