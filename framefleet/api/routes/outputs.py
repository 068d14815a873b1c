"""Downloads of job outputs: authenticated (`/v1/jobs/{id}/outputs/…`) and through share links (`/share/…`).

A local output is streamed from its file in chunks, with Range (206) and If-Range handled by Starlette's
FileResponse; an object-store output is answered with a 307 to a pre-signed URL, so its bytes never pass
through the API. Share links serve a ladder's playlists and manifests themselves (relative URLs in them
must resolve under the share prefix), and redirect its segments like any other object.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, RedirectResponse, Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem
from framefleet.api.responses import json_response
from framefleet.api.routes.jobs import TenantQuery, as_tenant
from framefleet.api.schemas import ProblemView
from framefleet.config import Settings
from framefleet.core.failures import FailureClass
from framefleet.db.models import Job, Tenant
from framefleet.jobs import service
from framefleet.keys import Principal
from framefleet.storage import backend_within, profile_service
from framefleet.storage.base import StorageBackend, StorageDenied, StorageError, StorageNotFound
from framefleet.storage.local import LocalStorage
from framefleet.storage.namespace import Namespace, namespace_for
from framefleet.storage.profiles import SCHEME as PROFILE_SCHEME
from framefleet.storage.profiles import ProfileStorage
from framefleet.storage.sharing import OutputEntry, Share, ShareError, open_share, output_file_uri, sign_share

router = APIRouter(prefix="/v1/jobs", tags=["outputs"])
share_router = APIRouter(prefix="/share", tags=["share"], include_in_schema=False)

Reader = Annotated[Principal, requires("jobs:read")]
Sharer = Annotated[Principal, requires("outputs:share")]

# Text files a player resolves relative URLs against: served by the API under a share link, never
# redirected (after a redirect the player would resolve them against the store's URL instead).
_PLAYLIST_SUFFIXES = (".m3u8", ".mpd", ".vtt")

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The whole file"},
    206: {"description": "The requested byte range"},
    307: {"description": "An object-store output: a pre-signed URL that expires"},
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such job, output or file for this tenant"},
    416: {"description": "The range lies outside the file"},
}
_SHARE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **{code: _RESPONSES[code] for code in (401, 403, 404)},
    422: {"model": ProblemView, "description": "No such output, or a lifetime beyond the allowed one"},
}


class OutputFile(FileResponse):
    """A file streamed in 1 MiB reads: each read is a hop to a worker thread, so Starlette's 64 KiB made
    local downloads ~16 times more hops (measured: ~150 MiB/s instead of the disk's speed)."""

    chunk_size = 1024 * 1024


def _namespace(session: Session, settings: Settings, tenant: str, tenant_id: int, uri: str) -> Namespace:
    """The tenant's namespace, with its storage profiles (credentials decrypted) when `uri` needs one."""
    profiles = None
    if uri.lower().startswith(f"{PROFILE_SCHEME}://"):
        profiles = profile_service.load(session, tenant_id=tenant_id, secret_key=settings.secret_key)
    return namespace_for(settings, tenant, profiles)


def _entries(session: Session, job_id: str) -> list[OutputEntry]:
    return [OutputEntry(o.name, o.kind, o.uri) for o in service.outputs_of(session, job_id)]


def _serve(uri: str, *, namespace: Namespace, settings: Settings, through: bool) -> Response:
    """The answer for one stored file: streamed with ranges (local), a redirect, or passed through."""
    try:
        backend: StorageBackend = backend_within(uri, namespace, write=False, settings=settings)
        if isinstance(backend, ProfileStorage):
            # A profile's store is served like any other: the real URI on the profile's own backend.
            uri, backend = backend.real(uri), backend.inner
        if isinstance(backend, LocalStorage):
            path = backend.fetch(uri, Path(tempfile.gettempdir()))  # local files are used in place
            return OutputFile(path, content_disposition_type="inline")
        if not through:
            return _redirect(backend, uri, settings)
        # A playlist from an object store: small text, fetched into a temporary folder and served from it.
        folder = Path(tempfile.mkdtemp(prefix="framefleet-share-"))
        local = backend.fetch(uri, folder)
        return OutputFile(local, background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))
    except StorageNotFound as exc:
        raise Problem("not-found", "the output file is no longer stored") from exc
    except StorageError as exc:
        # Denied (outside the tenant's storage) is answered as missing: it tells nothing about other tenants.
        if exc.failure_class is FailureClass.storage_unavailable:
            raise Problem("unavailable", "the output's storage cannot be reached now") from exc
        raise Problem("not-found", "the output file cannot be read") from exc


def _redirect(backend: StorageBackend, uri: str, settings: Settings) -> Response:
    """A 307 to a pre-signed URL of an object; 409 when the store's credentials cannot sign one."""
    presign = getattr(backend, "presign_get", None)
    try:
        if presign is None:
            raise StorageDenied(f"{backend.scheme}:// storage has no pre-signed downloads")
        url = presign(uri, expires_seconds=settings.download_link_seconds)
    except StorageDenied as exc:
        raise Problem(
            "conflict", f"this output cannot be handed out by a pre-signed URL: {exc.message}"
        ) from exc
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})


def _download(
    session: Session, settings: Settings, principal: Principal, job_id: str, name: str, path: str | None
) -> Response:
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
        uri = output_file_uri(_entries(session, job.id), name, path)
    except service.JobNotFound as exc:
        raise Problem("not-found", f"no job {job_id}") from exc
    except LookupError as exc:
        raise Problem("not-found", str(exc)) from exc
    namespace = _namespace(session, settings, principal.tenant, job.tenant_id, uri)
    session.close()  # no connection held while a large file streams
    return _serve(uri, namespace=namespace, settings=settings, through=False)


@router.get("/{job_id}/outputs/{name}", responses=_RESPONSES, summary="Download an output")
def download_output(
    job_id: str,
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    caller: Reader,
    tenant: TenantQuery = None,
) -> Response:
    """The output's file (Range supported), or a 307 to a pre-signed URL on object stores."""
    return _download(session, settings, as_tenant(session, caller, tenant), job_id, name, None)


@router.get(
    "/{job_id}/outputs/{name}/{path:path}", responses=_RESPONSES, summary="Download a file of an output"
)
def download_output_file(
    job_id: str,
    name: str,
    path: str,
    session: SessionDep,
    settings: SettingsDep,
    caller: Reader,
    tenant: TenantQuery = None,
) -> Response:
    """A file below a folder output or beside a ladder's manifest (`outputs/hls/720p/seg_00001.ts`)."""
    return _download(session, settings, as_tenant(session, caller, tenant), job_id, name, path)


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: str = Field(min_length=1, max_length=160, description="the output's name (a ladder's group name)")
    expires_in_seconds: int = Field(default=86400, ge=60, description="how long the link works")


class ShareView(BaseModel):
    url: str
    expires_at: int
    output: str


@router.post(
    "/{job_id}/share",
    response_model=ShareView,
    status_code=201,
    responses=_SHARE_RESPONSES,
    summary="Create a share link",
)
def share_output(
    job_id: str,
    request: Annotated[ShareRequest, Body()],
    session: SessionDep,
    settings: SettingsDep,
    principal: Sharer,
) -> Response:
    """A URL prefix that reads one output (a whole ladder) without an API key until it expires."""
    if request.expires_in_seconds > settings.share_max_seconds:
        raise Problem(
            "validation",
            f"a share link lasts at most {settings.share_max_seconds} seconds",
            errors=[{"field": "expires_in_seconds", "message": f"at most {settings.share_max_seconds}"}],
        )
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
    except service.JobNotFound as exc:
        raise Problem("not-found", f"no job {job_id}") from exc
    entry = next((o for o in _entries(session, job.id) if o.name == request.output), None)
    if entry is None:
        raise Problem(
            "validation",
            f"the job has no output named {request.output!r}",
            errors=[{"field": "output", "message": "no such output"}],
        )
    expires = int(time.time()) + request.expires_in_seconds
    token = sign_share(Share(job.id, entry.name, expires), secret_key=settings.secret_key)
    tail = "" if entry.uri.endswith("/") else entry.uri.rsplit("/", 1)[-1]
    url = f"{settings.public_url.rstrip('/')}/share/{token}/{tail}"
    return json_response({"url": url, "expires_at": expires, "output": entry.name}, 201)


def _shared(session: Session, settings: Settings, token: str, path: str) -> Response:
    try:
        share = open_share(token, secret_key=settings.secret_key, now=time.time())
    except ShareError as exc:
        raise Problem("not-found", "no such share link, or it expired") from exc
    job = session.get(Job, share.job_id)
    tenant = session.get(Tenant, job.tenant_id) if job is not None else None
    if job is None or tenant is None or tenant.status != "active":
        raise Problem("not-found", "no such share link, or it expired")
    entries = _entries(session, job.id)
    entry = next((o for o in entries if o.name == share.output), None)
    if entry is None:
        raise Problem("not-found", "the shared output is no longer there")
    # The link's own file (the manifest or single output) is its last segment; anything else lies below.
    own = entry.uri.rsplit("/", 1)[-1]
    try:
        uri = output_file_uri(
            entries, share.output, None if path == own and not entry.uri.endswith("/") else path
        )
    except LookupError as exc:
        raise Problem("not-found", str(exc)) from exc
    namespace = _namespace(session, settings, tenant.name, tenant.id, uri)
    session.close()
    return _serve(uri, namespace=namespace, settings=settings, through=path.endswith(_PLAYLIST_SUFFIXES))


# A share link is handed to players on any origin, and carries no cookie or key: every origin may read it.
_SHARE_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges, ETag",
}


@share_router.get("/{token}/{path:path}")
def shared_file(token: str, path: str, session: SessionDep, settings: SettingsDep) -> Response:
    """A file of a shared output, for anyone holding the link (no API key)."""
    try:
        response = _shared(session, settings, token, path)
    except Problem as problem:
        problem.headers = {**(problem.headers or {}), **_SHARE_CORS}
        raise
    response.headers.update(_SHARE_CORS)
    return response


@share_router.options("/{token}/{path:path}")
def shared_file_preflight(token: str, path: str) -> Response:
    """CORS preflight of a player on another origin asking for a byte range."""
    headers = {
        **_SHARE_CORS,
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": "Range, If-Range",
        "Access-Control-Max-Age": "600",
    }
    return Response(status_code=204, headers=headers)
