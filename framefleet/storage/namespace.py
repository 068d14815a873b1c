"""Tenant namespaces (pure): the file:// and object-store locations each tenant may read and write.

A tenant owns `tenants/<tenant>/` under every storage root, under the output root and under every S3, Azure
and GCS root,
and its jobs' default outputs go to `<output root>/tenants/<tenant>/<job id>/`. An operator can grant
locations to every tenant: FRAMEFLEET_SHARED_STORAGE (read-only) and FRAMEFLEET_SHARED_STORAGE_WRITABLE.
Nothing else is reachable. The API checks every URI of a spec at submission (422 naming the field), and the
worker checks again before each fetch and each publish, where a file:// path is also confined after its
symlinks are resolved (LocalStorage built on the namespace's folders), so a link planted in one tenant's
area cannot lead into another's.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from framefleet.config import Settings
from framefleet.core.specbase import NAME_PATTERN
from framefleet.storage.azure import parse_azure_uri
from framefleet.storage.base import StorageDenied, StorageError
from framefleet.storage.gcs import parse_gs_uri
from framefleet.storage.local import parse_file_uri
from framefleet.storage.profiles import SCHEME as PROFILE_SCHEME
from framefleet.storage.profiles import Profile, parse_profile_uri
from framefleet.storage.s3 import parse_s3_uri

TENANTS_DIR = "tenants"


def check_tenant_name(name: str) -> str:
    """`name` when it can name a tenant's storage area (one safe path segment); ValueError otherwise."""
    if not NAME_PATTERN.match(name):
        raise ValueError("a tenant name is 1-64 letters, digits, '_', '-' or '.', starting alphanumeric")
    return name


@dataclass(frozen=True)
class Location:
    """A file:// folder or an object-store prefix as segments, so that containment compares whole segments."""

    scheme: str  # "file", "s3", "azure" (az:// spells it too) or "gs"
    bucket: str  # "" for file
    path: tuple[str, ...]

    @classmethod
    def of_path(cls, path: Path) -> Location:
        return cls("file", "", Path(path).parts[1:])

    def child(self, *segments: str) -> Location:
        return Location(self.scheme, self.bucket, (*self.path, *segments))

    def contains(self, other: Location) -> bool:
        """Whether `other` is this location or lies below it."""
        same_store = (self.scheme, self.bucket) == (other.scheme, other.bucket)
        return same_store and other.path[: len(self.path)] == self.path

    @property
    def local_path(self) -> Path:
        return Path("/", *self.path)

    @property
    def uri(self) -> str:
        if self.scheme == "file":
            return self.local_path.as_uri()
        return f"{self.scheme}://{self.bucket}/{'/'.join(self.path)}".rstrip("/")


def location_of(uri: str) -> Location | None:
    """The location an object URI names; None for http(s) (nobody's storage); StorageDenied if malformed."""
    scheme = uri.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        return Location("file", "", tuple(parse_file_uri(uri).split("/")[1:]))
    if scheme == "s3":
        bucket, key = parse_s3_uri(uri)
        return Location("s3", bucket, tuple(key.split("/")))
    if scheme in ("azure", "az"):
        container, blob = parse_azure_uri(uri)
        return Location("azure", container, tuple(blob.split("/")))
    if scheme == "gs":
        bucket, name = parse_gs_uri(uri)
        return Location("gs", bucket, tuple(name.split("/")))
    raise StorageDenied(f"unsupported storage scheme {scheme!r}")


def prefix_location(uri: str) -> Location:
    """The location of a configured prefix (a root or shared entry), which may name a whole bucket."""
    location = location_of(uri.rstrip("/") + "/x")
    if location is None:
        raise ValueError(f"{uri!r} is not a file:// or object-store location")
    return Location(location.scheme, location.bucket, location.path[:-1])


@dataclass(frozen=True)
class Namespace:
    """Where one tenant's jobs may read and write."""

    tenant: str
    own: tuple[Location, ...]
    shared: tuple[Location, ...]  # read-only for every tenant
    shared_writable: tuple[Location, ...]
    # The tenant's storage profiles by name (storage/profiles.py); None when not loaded, which only the
    # API's namespace check allows (the submission's resolver checks the names): nothing is reachable
    # through storage:// without them.
    profiles: Mapping[str, Profile] | None = field(default=None, compare=False)

    def areas(self, *, write: bool) -> tuple[Location, ...]:
        return self.own + self.shared_writable + (() if write else self.shared)

    def local_roots(self, *, write: bool) -> list[Path]:
        """The folders a file:// path must stay inside once its symlinks are resolved."""
        return [area.local_path for area in self.areas(write=write) if area.scheme == "file"]

    def problem(self, uri: str, *, write: bool) -> str | None:
        """Why this tenant may not read (or write) `uri`, in words; None when it may."""
        if uri[: len(PROFILE_SCHEME) + 3].lower() == f"{PROFILE_SCHEME}://":
            return self._profile_problem(uri)
        try:
            location = location_of(uri)
        except StorageError as exc:
            return exc.message
        if location is None:
            if write:
                return "http(s):// is for inputs; outputs go to file://, s3://, azure:// or gs://"
            return None
        areas = self.areas(write=write)
        inside = [area for area in areas if area.contains(location)]
        if not inside and location.scheme == "file":
            # A path spelled through a symlinked folder (/data -> /mnt/data) counts where it really leads.
            real = Location.of_path(Path(os.path.realpath(location.local_path)))
            inside = [area for area in areas if area.contains(real)]
        if not inside:
            if write and any(area.contains(location) for area in self.shared):
                return f"{uri} is in a shared location that tenants may only read"
            return f"{uri} is outside the storage of tenant {self.tenant!r} ({self.hint()})"
        if write and location in inside:
            return f"{uri} names a storage area itself, not a file or folder inside it"
        return None

    def _profile_problem(self, uri: str) -> str | None:
        try:
            name, _ = parse_profile_uri(uri)
        except StorageError as exc:
            return exc.message
        if self.profiles is not None and name not in self.profiles:
            return f"tenant {self.tenant!r} has no storage profile named {name!r}"
        return None

    def profile(self, uri: str) -> Profile:
        """The loaded profile a storage:// URI names; StorageDenied when unknown or not loaded."""
        name, _ = parse_profile_uri(uri)
        found = (self.profiles or {}).get(name)
        if found is None:
            raise StorageDenied(f"tenant {self.tenant!r} has no storage profile named {name!r}")
        return found

    def check(self, uri: str, *, write: bool) -> None:
        """Raise StorageDenied when this tenant may not read (or write) `uri`."""
        problem = self.problem(uri, write=write)
        if problem is not None:
            raise StorageDenied(problem)

    def hint(self) -> str:
        return "use " + " or ".join(f"{area.uri}/…" for area in self.own[:2])


def namespace_for(
    settings: Settings, tenant: str, profiles: Mapping[str, Profile] | None = None
) -> Namespace:
    """The namespace of `tenant` under these settings (and its storage profiles, when loaded): pure. The
    part read from settings is memoized, since every submission asks for it and the answer is immutable."""
    base = _namespace(
        tenant,
        tuple(settings.storage_roots),
        settings.output_root,
        tuple(settings.s3_roots),
        tuple(settings.azure_roots),
        tuple(settings.gcs_roots),
        tuple(settings.shared_storage),
        tuple(settings.shared_storage_writable),
    )
    return base if profiles is None else dataclasses.replace(base, profiles=profiles)


@functools.lru_cache(maxsize=4096)
def _namespace(
    tenant: str,
    storage_roots: tuple[Path, ...],
    output_root: str,
    s3_roots: tuple[str, ...],
    azure_roots: tuple[str, ...],
    gcs_roots: tuple[str, ...],
    shared_storage: tuple[str, ...],
    shared_storage_writable: tuple[str, ...],
) -> Namespace:
    segment = check_tenant_name(tenant)
    roots = [Location.of_path(root) for root in storage_roots]

    def usable(location: Location) -> bool:
        # A file:// location outside every storage root could not be read or written anyway.
        return location.scheme != "file" or any(root.contains(location) for root in roots)

    own = [root.child(TENANTS_DIR, segment) for root in roots]
    configured = [output_root, *s3_roots, *azure_roots, *gcs_roots]
    for location in (prefix_location(uri).child(TENANTS_DIR, segment) for uri in configured):
        if location not in own and usable(location):
            own.append(location)
    shared = tuple(filter(usable, map(prefix_location, shared_storage)))
    writable = tuple(filter(usable, map(prefix_location, shared_storage_writable)))
    return Namespace(tenant=segment, own=tuple(own), shared=shared, shared_writable=writable)


def job_output_base(settings: Settings, tenant: str, job_id: str, default: Profile | None = None) -> str:
    """Where a job's outputs go when they name no destination: its own folder in the tenant's default
    output profile when the operator set one, else in the tenant's area of the output root."""
    if default is not None:
        return f"{PROFILE_SCHEME}://{default.name}/{job_id}"
    return prefix_location(settings.output_root).child(TENANTS_DIR, check_tenant_name(tenant), job_id).uri
