"""Per-tenant storage profiles: named locations with their own credentials, used as `storage://<name>/<path>`.

A profile is a tenant's: its name resolves only within that tenant (another tenant's name is unknown), and
its location is reached with the credentials stored in it, never with the server's own. That is what keeps
profiles from being a way around the tenant namespaces: a profile on S3, Azure or GCS must carry
credentials (or, for GCS, an emulator endpoint that takes none), so it reaches only what those
credentials allow; a `file` profile must lie under a folder the operator lists in
FRAMEFLEET_PROFILE_FILE_ROOTS, and its paths are confined there after symlinks are resolved.

Credentials are stored encrypted (tenancy/secrets.py, listed in tenancy/secret_store.py) and never
returned by the API. The API checks that a spec's `storage://` names exist at submission; the worker
resolves each URI to the real one and builds the backend from the profile when it fetches and publishes.
A profile marked `default_output` (set by an operator) is where a tenant's jobs write when their outputs
name no destination: `storage://<profile>/<job id>/`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framefleet.storage.azure import AzureBlobStorage
from framefleet.storage.base import Digest, StorageBackend, StorageDenied, check_object_key
from framefleet.storage.gcs import GcsStorage
from framefleet.storage.local import LocalStorage
from framefleet.storage.s3 import S3Storage

SCHEME = "storage"
KINDS = ("s3", "azure", "gcs", "file")
# Credential fields each kind takes (any others are refused when a profile is written).
CREDENTIAL_FIELDS: dict[str, frozenset[str]] = {
    "s3": frozenset({"access_key_id", "secret_access_key", "session_token"}),
    "azure": frozenset({"connection_string", "account_name", "account_key", "sas_token"}),
    "gcs": frozenset({"service_account_json"}),
    "file": frozenset(),
}


@dataclass(frozen=True)
class Profile:
    """One storage profile. `credentials` is None when not decrypted (the API's checks need only names)."""

    name: str
    kind: str
    bucket: str  # bucket (s3, gcs), container (azure) or absolute folder (file)
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    credentials: Mapping[str, str] | None = field(default=None, repr=False)
    default_output: bool = False

    def real_uri(self, path: str) -> str:
        """The backend URI that `storage://<name>/<path>` stands for."""
        key = "/".join(part for part in (self.prefix.strip("/"), path) if part)
        if self.kind == "file":
            return (Path(self.bucket) / key).as_uri() if key else Path(self.bucket).as_uri()
        scheme = {"s3": "s3", "azure": "azure", "gcs": "gs"}[self.kind]
        return f"{scheme}://{self.bucket}/{key}"


def parse_profile_uri(uri: str) -> tuple[str, str]:
    """(profile name, path) of `storage://<name>/<path>`; StorageDenied when malformed."""
    if not uri[:10].lower() == f"{SCHEME}://":
        raise StorageDenied(f"not a storage:// URI: {uri!r}")
    name, _, path = uri[10:].partition("/")
    if not name:
        raise StorageDenied(f"storage:// URI names no profile: {uri!r}")
    return name, check_object_key(path, uri)


def check_profile(
    *, kind: str, bucket: str, prefix: str, endpoint: str | None, credentials: Mapping[str, Any] | None,
    file_roots: list[Path],
) -> tuple[str, str] | None:  # fmt: skip
    """(field, reason) for the first thing wrong with a profile's location or credentials; None when fine."""
    if kind not in KINDS:
        return "kind", f"one of {', '.join(KINDS)}"
    if prefix and any(seg in ("", ".", "..") for seg in prefix.strip("/").split("/")):
        return "prefix", "no empty, '.' or '..' segments"
    creds = dict(credentials or {})
    unknown = sorted(set(creds) - CREDENTIAL_FIELDS[kind])
    if unknown:
        return (
            f"credentials.{unknown[0]}",
            f"a {kind} profile takes only {', '.join(sorted(CREDENTIAL_FIELDS[kind]))}",
        )
    if not all(isinstance(value, str) and value for value in creds.values()):
        return "credentials", "every credential is a non-empty string"
    if kind == "file":
        folder = Path(bucket)
        if not folder.is_absolute() or any(seg in (".", "..") for seg in folder.parts):
            return "bucket", "an absolute folder without '.' or '..'"
        if not any(folder == root or folder.is_relative_to(root) for root in file_roots):
            return (
                "bucket",
                "not under a folder the operator allows for profiles (FRAMEFLEET_PROFILE_FILE_ROOTS)",
            )
        return None
    if not bucket or "/" in bucket:
        return "bucket", "a bucket or container name"
    # The server's own credentials must never reach a tenant's location: each kind needs its own.
    if kind == "s3" and not {"access_key_id", "secret_access_key"} <= set(creds):
        return "credentials", "an s3 profile needs access_key_id and secret_access_key"
    keyed = bool(endpoint) and bool(creds.get("account_key") or creds.get("sas_token"))
    if kind == "azure" and not creds.get("connection_string") and not keyed:
        return (
            "credentials",
            "an azure profile needs a connection_string, or an endpoint with account_key or sas_token",
        )
    if kind == "gcs" and "service_account_json" not in creds and not endpoint:
        return "credentials", "a gcs profile needs service_account_json (or an emulator endpoint)"
    if kind == "gcs" and "service_account_json" in creds:
        try:
            json.loads(creds["service_account_json"])
        except ValueError:
            return "credentials.service_account_json", "a service-account key in JSON"
    return None


_backends: dict[str, StorageBackend] = {}
_lock = threading.Lock()


def _cache_key(profile: Profile) -> str:
    facts = [
        profile.kind,
        profile.bucket,
        profile.endpoint,
        profile.region,
        sorted((profile.credentials or {}).items()),
    ]
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()


def backend_of(profile: Profile) -> StorageBackend:
    """The backend reaching `profile`'s location with its own credentials (reused while they match)."""
    if profile.credentials is None:
        raise StorageDenied(f"storage profile {profile.name!r} was loaded without its credentials")
    creds = profile.credentials
    if profile.kind == "file":
        return LocalStorage([Path(profile.bucket)])
    key = _cache_key(profile)
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = _build(profile, creds)
        return backend


def _build(profile: Profile, creds: Mapping[str, str]) -> StorageBackend:
    if profile.kind == "s3":
        return S3Storage(
            profile.endpoint,
            profile.region or "us-east-1",
            access_key_id=creds["access_key_id"],
            secret_access_key=creds["secret_access_key"],
            session_token=creds.get("session_token"),
        )
    if profile.kind == "azure":
        return AzureBlobStorage(
            connection_string=creds.get("connection_string"),
            account_url=profile.endpoint,
            account_name=creds.get("account_name"),
            account_key=creds.get("account_key"),
            sas_token=creds.get("sas_token"),
        )
    info = json.loads(creds["service_account_json"]) if "service_account_json" in creds else None
    return GcsStorage(endpoint_url=profile.endpoint, credentials_info=info)


class ProfileStorage:
    """A backend seen through a profile: `storage://<name>/<path>` URIs in, the real URIs to the store."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.inner = backend_of(profile)
        self.scheme = self.inner.scheme

    def real(self, uri: str) -> str:
        name, path = parse_profile_uri(uri)
        if name != self.profile.name:
            raise StorageDenied(f"{uri} is not in storage profile {self.profile.name!r}")
        return self.profile.real_uri(path)

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        return self.inner.fetch(self.real(uri), workdir, name=name, digest=digest)

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        return self.inner.put(local, self.real(uri), move=move, replace=replace)

    def exists(self, uri: str) -> bool:
        return self.inner.exists(self.real(uri))

    def delete(self, uri: str) -> None:
        self.inner.delete(self.real(uri))

    def check(self) -> None:
        self.inner.check()
