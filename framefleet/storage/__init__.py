"""Storage backends chosen by URI scheme: file:// (local roots), s3:// (S3/MinIO), azure:// or az:// (Azure
Blob), gs:// (Google Cloud Storage), http(s):// (read-only)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from urllib.parse import quote, urlsplit

from framefleet.config import Settings, get_settings
from framefleet.storage.azure import AzureBlobStorage, parse_azure_uri
from framefleet.storage.base import (
    StorageBackend,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
    StorageUnavailable,
)
from framefleet.storage.gcs import GcsStorage, parse_gs_uri
from framefleet.storage.http import HttpStorage
from framefleet.storage.local import LocalStorage
from framefleet.storage.namespace import Namespace
from framefleet.storage.profiles import SCHEME as PROFILE_SCHEME
from framefleet.storage.profiles import ProfileStorage, parse_profile_uri
from framefleet.storage.s3 import S3Storage, parse_s3_uri

__all__ = [
    "AzureBlobStorage",
    "GcsStorage",
    "HttpStorage",
    "LocalStorage",
    "S3Storage",
    "StorageBackend",
    "StorageDenied",
    "StorageError",
    "StorageNotFound",
    "StorageTooLarge",
    "StorageUnavailable",
    "backend_for",
    "backend_within",
    "join_uri",
    "reset_backends",
    "scheme_of",
]

_backends: dict[Hashable, StorageBackend] = {}
_lock = threading.Lock()


def scheme_of(uri: str) -> str:
    """The lower-cased scheme of `uri`, or StorageDenied when it has none."""
    scheme = urlsplit(uri).scheme.lower() if "://" in uri or uri.startswith("file:") else ""
    if not scheme:
        raise StorageDenied(f"not a storage URI (no scheme): {uri!r}")
    return scheme


def _probe_bucket(settings: Settings, *schemes: str) -> str | None:
    """The bucket (or container) of the output root when it is on this store: the readiness probe's."""
    scheme, _, rest = settings.output_root.partition("://")
    if scheme.lower() not in schemes:
        return None
    return rest.partition("/")[0] or None


def backend_for(uri: str, settings: Settings | None = None) -> StorageBackend:
    """The backend serving `uri`'s scheme, built from settings and reused while the settings match."""
    settings = settings or get_settings()
    scheme = scheme_of(uri)
    key: Hashable
    factory: Callable[[], StorageBackend]
    if scheme == "file":
        roots = tuple(settings.storage_roots)
        key = ("file", roots)
        factory = lambda: LocalStorage(list(roots))  # noqa: E731
    elif scheme == "s3":
        probe = _probe_bucket(settings, "s3")
        key = ("s3", settings.s3_endpoint_url, settings.s3_region, probe)
        factory = lambda: S3Storage(settings.s3_endpoint_url, settings.s3_region, probe_bucket=probe)  # noqa: E731
    elif scheme in ("azure", "az"):
        container = _probe_bucket(settings, "azure", "az")
        key = (
            "azure",
            settings.azure_connection_string,
            settings.azure_account_url,
            settings.azure_account_name,
            settings.azure_account_key,
            settings.azure_sas_token,
            container,
        )
        if not settings.azure_connection_string and not settings.azure_account_url:
            raise StorageUnavailable(
                "azure:// needs FRAMEFLEET_AZURE_CONNECTION_STRING or FRAMEFLEET_AZURE_ACCOUNT_URL"
            )
        factory = lambda: AzureBlobStorage(  # noqa: E731
            connection_string=settings.azure_connection_string,
            account_url=settings.azure_account_url,
            account_name=settings.azure_account_name,
            account_key=settings.azure_account_key,
            sas_token=settings.azure_sas_token,
            probe_container=container,
        )
    elif scheme == "gs":
        bucket = _probe_bucket(settings, "gs")
        key = ("gs", settings.gcs_project, settings.gcs_endpoint_url, settings.gcs_credentials_file, bucket)
        factory = lambda: GcsStorage(  # noqa: E731
            project=settings.gcs_project,
            endpoint_url=settings.gcs_endpoint_url,
            credentials_file=settings.gcs_credentials_file,
            probe_bucket=bucket,
        )
    elif scheme in ("http", "https"):
        key = ("http", settings.http_allow_private, settings.http_max_bytes, settings.http_timeout_seconds)
        factory = lambda: HttpStorage(  # noqa: E731
            allow_private=settings.http_allow_private,
            max_bytes=settings.http_max_bytes,
            timeout=settings.http_timeout_seconds,
        )
    else:
        raise StorageDenied(f"unsupported storage scheme {scheme!r} in {uri!r}")
    with _lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = factory()
        return backend


def backend_within(
    uri: str, namespace: Namespace, *, write: bool, settings: Settings | None = None
) -> StorageBackend:
    """The backend for `uri` once `namespace` allows reading (or writing) it; StorageDenied otherwise.

    A file:// URI gets a LocalStorage confined to the namespace's folders, so its path must stay inside
    them after symlinks are resolved, not only as spelled. It is built per call: a tenant's folders are
    resolved afresh each time, never from a cache made before they existed.
    """
    namespace.check(uri, write=write)
    scheme = scheme_of(uri)
    if scheme == PROFILE_SCHEME:
        return ProfileStorage(namespace.profile(uri))
    if scheme == "file":
        return LocalStorage(namespace.local_roots(write=write))
    return backend_for(uri, settings)


def reset_backends() -> None:
    """Forget cached backends (tests, or after settings change)."""
    with _lock:
        _backends.clear()


_OBJECT_PARSERS: dict[str, Callable[[str], tuple[str, str]]] = {
    "s3": parse_s3_uri,
    "azure": parse_azure_uri,
    "az": parse_azure_uri,
    "gs": parse_gs_uri,
    # storage://<profile>/<path>: keys verbatim, as the profile's store will take them.
    PROFILE_SCHEME: parse_profile_uri,
}


def _segments(part: str) -> list[str]:
    segments = str(part).split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise StorageDenied(f"invalid path component {part!r}: empty, '.' or '..' segment")
        if "\\" in segment or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in segment):
            raise StorageDenied(f"invalid path component {part!r}: backslash or control character")
    return segments


def join_uri(base: str, *parts: str) -> str:
    """`base` with path `parts` appended (each may hold '/'-separated segments; no '..' or empties).

    file:// and http(s):// segments are percent-encoded; object-store keys (s3, azure, gs) are verbatim, as
    their command-line tools write them.
    """
    scheme = scheme_of(base)
    if scheme not in ("file", *_OBJECT_PARSERS, "http", "https"):
        raise StorageDenied(f"unsupported storage scheme {scheme!r} in {base!r}")
    segments = [segment for part in parts for segment in _segments(part)]
    if scheme in _OBJECT_PARSERS:
        _OBJECT_PARSERS[scheme](base.rstrip("/") + "/x")  # validates the bucket of the base
    head = base.rstrip("/")
    if scheme == "file" and head in ("file:", "file://"):
        head = "file://"
    if scheme not in _OBJECT_PARSERS:
        segments = [quote(segment, safe="") for segment in segments]
    return "/".join([head, *segments]) if segments else base
