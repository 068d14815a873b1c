"""Storage backends chosen by URI scheme: file:// (local roots), s3:// (S3/MinIO), http(s):// (read-only)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from urllib.parse import quote, urlsplit

from framefleet.config import Settings, get_settings
from framefleet.storage.base import (
    StorageBackend,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
    StorageUnavailable,
)
from framefleet.storage.http import HttpStorage
from framefleet.storage.local import LocalStorage
from framefleet.storage.namespace import Namespace
from framefleet.storage.s3 import S3Storage, parse_s3_uri

__all__ = [
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


def _s3_probe_bucket(settings: Settings) -> str | None:
    if scheme_of(settings.output_root) != "s3":
        return None
    return settings.output_root[5:].partition("/")[0] or None


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
        probe = _s3_probe_bucket(settings)
        key = ("s3", settings.s3_endpoint_url, settings.s3_region, probe)
        factory = lambda: S3Storage(settings.s3_endpoint_url, settings.s3_region, probe_bucket=probe)  # noqa: E731
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
    if scheme_of(uri) == "file":
        return LocalStorage(namespace.local_roots(write=write))
    return backend_for(uri, settings)


def reset_backends() -> None:
    """Forget cached backends (tests, or after settings change)."""
    with _lock:
        _backends.clear()


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

    file:// and http(s):// segments are percent-encoded; s3 keys are verbatim, as the aws CLI writes them.
    """
    scheme = scheme_of(base)
    if scheme not in ("file", "s3", "http", "https"):
        raise StorageDenied(f"unsupported storage scheme {scheme!r} in {base!r}")
    segments = [segment for part in parts for segment in _segments(part)]
    if scheme == "s3":
        parse_s3_uri(base.rstrip("/") + "/x")  # validates the bucket of the base
    head = base.rstrip("/")
    if scheme == "file" and head in ("file:", "file://"):
        head = "file://"
    if scheme != "s3":
        segments = [quote(segment, safe="") for segment in segments]
    return "/".join([head, *segments]) if segments else base
