"""Uploads: the tus 1.0.0 protocol (core, creation, termination, expiration) under /v1/uploads, and
pre-signed direct uploads to object stores. The state lives in framefleet/storage/uploads.py."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, in_thread, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.responses import json_response
from framefleet.api.routes.jobs import quota_problem
from framefleet.api.schemas import ProblemView
from framefleet.config import Settings
from framefleet.core.failures import FailureClass
from framefleet.db.models import Tenant, Upload, utcnow
from framefleet.keys import Principal
from framefleet.storage import uploads
from framefleet.storage.base import StorageError

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"

Uploader = Annotated[Principal, requires("uploads:write")]

_COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    412: {"model": ProblemView, "description": "Tus-Resumable missing or not 1.0.0 (see Tus-Version)"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemView, "description": "No such upload for this tenant, or it expired"}
}


async def tus_resumable(
    _principal: Uploader, tus_resumable: Annotated[str | None, Header(alias="Tus-Resumable")] = None
) -> None:
    """Every tus request but OPTIONS names the protocol version; 412 with the one spoken otherwise.

    Checked after the permission (it takes the principal), so a key without it is told 403 first.
    """
    if tus_resumable != TUS_VERSION:
        raise Problem(
            "tus-version",
            f"Tus-Resumable must be {TUS_VERSION} (got {tus_resumable!r})",
            headers={"Tus-Version": TUS_VERSION},
        )


Tus = Depends(tus_resumable)


def _expires(upload: Upload) -> str:
    return format_datetime(upload.expires_at, usegmt=True)


def _headers(upload: Upload, offset: int) -> dict[str, str]:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Upload-Length": str(upload.length),
    }
    if upload.state == "open":
        headers["Upload-Expires"] = _expires(upload)
    return headers


def _not_found(upload_id: str) -> Problem:
    return Problem("not-found", f"no upload {upload_id}, or it expired")


def _storage_problem(exc: StorageError) -> Problem:
    if exc.failure_class is FailureClass.storage_unavailable:
        return Problem(
            "unavailable", f"the storage cannot be reached now: {exc.message}", headers={"Retry-After": "30"}
        )
    return Problem("conflict", f"the upload cannot be stored: {exc.message}")


def _view(upload: Upload, offset: int) -> dict[str, Any]:
    return {
        "id": upload.id,
        "state": upload.state,
        "length": upload.length,
        "offset": offset,
        "filename": upload.filename,
        "uri": f"{uploads.SCHEME}{upload.id}" if upload.state == "complete" else None,
        "stored_uri": upload.uri,
        "created_at": upload.created_at,
        "expires_at": upload.expires_at if upload.state == "open" else None,
    }


def _tenant(session: Session, principal: Principal) -> Tenant:
    tenant = session.get(Tenant, principal.tenant_id)
    if tenant is None:
        raise Problem("not-found", f"no tenant {principal.tenant!r}")
    return tenant


@router.options("", status_code=204, summary="tus capabilities")
def capabilities(session: SessionDep, settings: SettingsDep, principal: Uploader) -> Response:
    """The tus version, extensions and this tenant's largest upload."""
    limit = uploads.max_bytes_of(settings, _tenant(session, principal).settings)
    return Response(
        status_code=204,
        headers={"Tus-Version": TUS_VERSION, "Tus-Extension": TUS_EXTENSIONS, "Tus-Max-Size": str(limit)},
    )


@router.post(
    "",
    status_code=201,
    responses={
        **_COMMON,
        413: {"model": ProblemView, "description": "Upload-Length over the tenant's limit"},
        429: {
            "model": ProblemView,
            "description": "Upload-Length would take the tenant's stored bytes past its `output_bytes` quota "
            "(`quota-exceeded`: `quota`, `usage`, `limit`)",
        },
    },
    summary="Create an upload (tus creation)",
    dependencies=[Tus],
)
def create_upload(
    session: SessionDep,
    settings: SettingsDep,
    principal: Uploader,
    upload_length: Annotated[int, Header(alias="Upload-Length", ge=0)],
    upload_metadata: Annotated[str | None, Header(alias="Upload-Metadata", max_length=4096)] = None,
) -> Response:
    """A new upload of Upload-Length bytes (`filename` in Upload-Metadata names the stored file)."""
    try:
        metadata = uploads.parse_metadata(upload_metadata)
    except ValueError as exc:
        raise validation_problem("Upload-Metadata", str(exc)) from exc
    tenant = _tenant(session, principal)
    try:
        upload = uploads.create(
            session, settings=settings, tenant=tenant, length=upload_length, metadata=metadata, now=utcnow()
        )
    except uploads.UploadTooLarge as exc:
        raise Problem("payload-too-large", str(exc), headers={"Tus-Max-Size": str(exc.limit)}) from exc
    except uploads.OverQuota as exc:
        raise quota_problem(principal, exc.over) from exc
    if upload.length == 0:
        try:
            uploads.finish(session, settings=settings, tenant=tenant.name, upload=upload, now=utcnow())
        except StorageError as exc:
            raise _storage_problem(exc) from exc
    headers = _headers(upload, 0) | {"Location": f"/v1/uploads/{upload.id}"}
    return json_response(_view(upload, 0), 201, headers)


@router.head("/{upload_id}", responses={**_COMMON, **_NOT_FOUND}, summary="Upload offset", dependencies=[Tus])
def upload_offset(
    upload_id: str, session: SessionDep, settings: SettingsDep, principal: Uploader
) -> Response:
    """Upload-Offset: where to resume."""
    upload = _find(session, principal, upload_id)
    headers = _headers(upload, uploads.offset_of(settings, principal.tenant, upload)) | {
        "Cache-Control": "no-store"
    }
    return Response(status_code=200, headers=headers)


@router.get("/{upload_id}", responses={**_COMMON, **_NOT_FOUND}, summary="Get an upload")
def get_upload(upload_id: str, session: SessionDep, settings: SettingsDep, principal: Uploader) -> Response:
    """The upload's state, offset and, once complete, the `upload://` URI a job names as its input."""
    upload = _find(session, principal, upload_id)
    offset = uploads.offset_of(settings, principal.tenant, upload)
    return json_response(_view(upload, offset), headers={"Cache-Control": "no-store"})


def _find(session: Session, principal: Principal, upload_id: str) -> Upload:
    try:
        return uploads.find(session, tenant_id=principal.tenant_id, upload_id=upload_id, now=utcnow())
    except uploads.UploadNotFound as exc:
        raise _not_found(upload_id) from exc


@router.patch(
    "/{upload_id}",
    status_code=204,
    responses={
        **_COMMON,
        **_NOT_FOUND,
        409: {"model": ProblemView, "description": "Upload-Offset is not the upload's offset, or it is busy"},
        413: {"model": ProblemView, "description": "More bytes than the upload's length"},
        415: {"model": ProblemView, "description": f"Content-Type is not {OFFSET_TYPE}"},
    },
    summary="Append to an upload (tus core)",
    dependencies=[Tus],
)
async def append_upload(
    upload_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Uploader,
    upload_offset: Annotated[int, Header(alias="Upload-Offset", ge=0)],
    content_type: Annotated[str | None, Header(alias="Content-Type")] = None,
) -> Response:
    """Append the body at Upload-Offset; 204 with the new Upload-Offset. The body streams to disk."""
    if (content_type or "").split(";")[0].strip().lower() != OFFSET_TYPE:
        raise Problem("unsupported-media-type", f"a PATCH body is sent as {OFFSET_TYPE}")
    upload = await in_thread(session, _find, principal, upload_id)
    if upload.state == "complete":
        if upload_offset == upload.length:
            return Response(status_code=204, headers=_headers(upload, upload.length))
        raise _offset_conflict(upload_offset, upload.length)
    part = uploads.part_path(settings, principal.tenant, upload.id)
    disconnected = False
    digest = None
    try:
        with uploads.appending(part) as handle:
            offset = handle.tell()
            if upload_offset != offset:
                raise _offset_conflict(upload_offset, offset)
            # A request that brings every byte hashes them on the way; a resumed upload is hashed at the end.
            digest = hashlib.sha256() if offset == 0 else None
            try:
                offset += await uploads.receive(
                    handle, request.stream(), room=upload.length - offset, digest=digest
                )
            except ClientDisconnect:
                # The bytes that arrived are on disk: the client resumes from the offset HEAD reports.
                disconnected = True
                offset = handle.tell()
    except uploads.UploadBusy as exc:
        raise Problem("conflict", str(exc), headers={"Tus-Resumable": TUS_VERSION}) from exc
    except uploads.UploadNotFound as exc:
        raise _not_found(upload_id) from exc
    except uploads.UploadTooLarge as exc:
        raise Problem("payload-too-large", str(exc)) from exc
    sha256 = digest.hexdigest() if digest is not None and not disconnected else None
    await in_thread(session, _after_append, settings, principal, upload.id, offset, sha256)
    if disconnected:
        return Response(status_code=204)  # the client is gone: nothing reads this
    upload = await in_thread(session, _find, principal, upload_id)
    return Response(status_code=204, headers=_headers(upload, offset))


def _offset_conflict(given: int, offset: int) -> Problem:
    return Problem(
        "upload-offset-mismatch",
        f"Upload-Offset {given} is not the upload's offset {offset}; resume from HEAD's Upload-Offset",
        headers={"Tus-Resumable": TUS_VERSION, "Upload-Offset": str(offset)},
        extensions={"offset": offset},
    )


def _after_append(
    session: Session,
    settings: Settings,
    principal: Principal,
    upload_id: str,
    offset: int,
    sha256: str | None,
) -> None:
    upload = uploads.find(session, tenant_id=principal.tenant_id, upload_id=upload_id, now=utcnow())
    if offset == upload.length:
        try:
            uploads.finish(
                session,
                settings=settings,
                tenant=principal.tenant,
                upload=upload,
                now=utcnow(),
                sha256=sha256,
            )
        except StorageError as exc:
            raise _storage_problem(exc) from exc
    else:
        uploads.touch(session, upload=upload, settings=settings, now=utcnow())


@router.delete(
    "/{upload_id}",
    status_code=204,
    responses={**_COMMON, **_NOT_FOUND},
    summary="Delete an upload (tus termination)",
    dependencies=[Tus],
)
def delete_upload(
    upload_id: str, session: SessionDep, settings: SettingsDep, principal: Uploader
) -> Response:
    """Stop and delete an upload: its part file, or its reference to its stored file once complete (the
    file goes with the last upload of the same bytes)."""
    upload = _find(session, principal, upload_id)
    try:
        uploads.terminate(session, settings=settings, tenant=principal.tenant, upload=upload, now=utcnow())
    except StorageError as exc:
        raise _storage_problem(exc) from exc
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


class PresignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=200)
    size: int = Field(ge=0, description="the exact size in bytes of the file to PUT")


@router.post(
    "/presign",
    status_code=201,
    responses={
        **{code: _COMMON[code] for code in (401, 403)},
        409: {"model": ProblemView, "description": "The output root cannot pre-sign (a local folder)"},
        413: {"model": ProblemView, "description": "Over the tenant's upload limit"},
        422: {"model": ProblemView, "description": "Invalid body"},
    },
    summary="A pre-signed direct upload URL",
)
def presign_upload(
    request: Annotated[PresignRequest, Body()],
    session: SessionDep,
    settings: SettingsDep,
    principal: Uploader,
) -> Response:
    """A URL to PUT the file straight to the object store, and the storage URI a job then names."""
    limit = uploads.max_bytes_of(settings, _tenant(session, principal).settings)
    if request.size > limit:
        raise Problem(
            "payload-too-large", f"size {request.size} is over this tenant's limit of {limit} bytes"
        )
    try:
        url, headers, uri = uploads.presign(
            settings=settings, tenant=principal.tenant, filename=request.filename, size=request.size
        )
    except StorageError as exc:
        raise _storage_problem(exc) from exc
    expires: datetime = utcnow() + timedelta(seconds=settings.upload_link_seconds)
    body = {"url": url, "method": "PUT", "headers": headers, "uri": uri, "expires_at": expires}
    return json_response(body, 201)
