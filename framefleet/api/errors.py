"""RFC 7807 problem+json for every error the API returns, each kind with a stable `type` URI.

Clients branch on `type` (never on `title` or `detail`), so a slug, once published, never changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from framefleet.logging import get_logger

log = get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://framefleet.dev/problems/"

# slug -> (status, title)
KINDS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "unauthorized": (401, "Authentication required"),
    "forbidden": (403, "Not allowed"),
    # A console-cookie request that changes state without echoing the session's CSRF token.
    "csrf": (403, "CSRF token missing or wrong"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "idempotency-conflict": (409, "Idempotency-Key reused with a different request"),
    "job-finished": (409, "Job already finished"),
    # A priority change (queue hopping) asked of a job that already runs or ended.
    "job-not-waiting": (409, "Job no longer waiting"),
    # tus: an upload PATCH at another offset than the upload's (`offset` says where to resume).
    "upload-offset-mismatch": (409, "Upload-Offset does not match"),
    "payload-too-large": (413, "Request body too large"),
    # tus: Tus-Resumable missing or another version (Tus-Version names the one spoken).
    "tus-version": (412, "Unsupported tus version"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "validation": (422, "Invalid request"),
    # Valid, but no known worker could ever run it: may change when workers with other capabilities join.
    "unschedulable": (422, "No worker can run this job"),
    "rate-limited": (429, "Too many requests"),
    # A tenant's quota (settings.quotas) is spent: names the quota, its usage and its limit.
    "quota-exceeded": (429, "Quota exceeded"),
    "internal": (500, "Internal server error"),
    "unavailable": (503, "Service unavailable"),
}
_SLUG_FOR_STATUS: dict[int, str] = {}
for _slug, (_status, _title) in KINDS.items():
    _SLUG_FOR_STATUS.setdefault(_status, _slug)

WWW_AUTHENTICATE = 'Bearer realm="framefleet"'


def problem_type(slug: str) -> str:
    """The stable `type` URI of a problem kind."""
    return PROBLEM_BASE + slug


class Problem(Exception):
    """An error answered as problem+json; raise it from a route or dependency."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        default_status, default_title = KINDS[slug]
        self.slug = slug
        self.detail = detail
        self.status = status or default_status
        self.title = title or default_title
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def validation_problem(field: str, message: str) -> Problem:
    """A 422 naming one field, for checks made outside pydantic (cursor, Last-Event-ID)."""
    return Problem("validation", f"{field}: {message}", errors=[{"field": field, "message": message}])


def problem_body(
    *,
    slug: str,
    status: int,
    title: str,
    detail: str | None,
    instance: str,
    errors: Sequence[Mapping[str, Any]] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = list(errors)
    if extensions:
        body.update({k: v for k, v in extensions.items() if k not in body})
    return json.dumps(body, separators=(",", ":"), default=str).encode()


def problem_response(problem: Problem, instance: str) -> Response:
    body = problem_body(
        slug=problem.slug,
        status=problem.status,
        title=problem.title,
        detail=problem.detail,
        instance=instance,
        errors=problem.errors,
        extensions=problem.extensions,
    )
    return Response(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_MEDIA_TYPE)


def field_path(loc: Sequence[str | int], ctx: Mapping[str, Any] | None) -> str:
    """The dotted field a pydantic error points at, inside the body/query/header it came from.

    A whole-model check names its sub-field in ctx["field"] (see core.spec.spec_error); it is appended.
    """
    parts = [str(p) for p in loc]
    if len(parts) > 1 or (parts and (ctx or {}).get("field")):
        parts = parts[1:]  # drop the location ("body", "query", ...) when a field follows it
    sub = (ctx or {}).get("field")
    if sub:
        parts.append(str(sub))
    return ".".join(parts)


def validation_errors(raw: Sequence[Any]) -> list[dict[str, str]]:
    """pydantic/FastAPI error dicts as [{field, message, type}]."""
    found: list[dict[str, str]] = []
    for error in raw:
        loc = tuple(error.get("loc", ()))
        ctx = error.get("ctx")
        kind = str(error.get("type", ""))
        if kind == "json_invalid":
            position = loc[1] if len(loc) > 1 else "?"
            reason = (ctx or {}).get("error", "invalid JSON")
            found.append(
                {
                    "field": "body",
                    "message": f"malformed JSON: {reason} (at character {position})",
                    "type": kind,
                }
            )
            continue
        found.append({"field": field_path(loc, ctx), "message": str(error.get("msg", "")), "type": kind})
    return found


def _summary(errors: Sequence[Mapping[str, str]]) -> str:
    if not errors:
        return "the request is not valid"
    first = errors[0]
    text = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more)"
    return text


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type header names JSON (application/json, or a +json type), parameters aside."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def unsupported_body_problem(content_type: str | None) -> Problem:
    """415 for a body that is not sent as JSON, saying what was sent."""
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type header"
    detail = f"send the body as JSON with Content-Type: application/json (the request had {sent})"
    return Problem("unsupported-media-type", detail, errors=[{"field": "Content-Type", "message": detail}])


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    content_type = request.headers.get("content-type")
    # A body route that got something other than JSON: the media type is the mistake, not the fields.
    body_errors = any(tuple(error.get("loc", ()))[:1] == ("body",) for error in exc.errors())
    if body_errors and not is_json_media_type(content_type):
        return problem_response(unsupported_body_problem(content_type), request.url.path)
    return problem_response(Problem("validation", _summary(errors), errors=errors), request.url.path)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug = _SLUG_FOR_STATUS.get(exc.status_code, "")
    title = KINDS[slug][1] if slug else HTTPStatus(exc.status_code).phrase
    # Framework details are generic ("Not Found"); say something more useful for the common cases.
    detail = {404: f"no resource at {request.url.path}", 405: f"{request.method} is not allowed here"}.get(
        exc.status_code, str(exc.detail)
    )
    body = problem_body(
        slug=slug, status=exc.status_code, title=title, detail=detail, instance=request.url.path
    )
    headers = dict(exc.headers or {})
    return Response(body, status_code=exc.status_code, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def internal_error_body(instance: str) -> bytes:
    """The 500 answer: nothing about the cause (it is logged with the request id instead)."""
    status, title = KINDS["internal"]
    return problem_body(
        slug="internal",
        status=status,
        title=title,
        detail="an unexpected error occurred; it has been logged",
        instance=instance,
    )


# Outages of what the API depends on are the service's trouble, not the client's and not a bug: 503.
RETRY_AFTER_SECONDS = 5
_DEPENDENCIES: dict[type[Exception], str] = {
    redis.RedisError: "Redis cannot be reached",
    OperationalError: "the database cannot be reached",
}


def busy(detail: str, retry_after: int) -> Problem:
    """A 503 for a process that is at capacity: the client should come back in `retry_after` seconds."""
    return Problem("unavailable", detail, headers={"Retry-After": str(retry_after)})


def unavailable_problem(exc: Exception, busy_retry_after: int) -> Problem | None:
    """The 503 for an outage or overload of what the API depends on; None for any other error."""
    if isinstance(exc, PoolTimeout):
        # Every connection of this process's pool stayed taken for the whole checkout wait: overload.
        log.warning("database pool exhausted")
        return busy("the API is at capacity; try again shortly", busy_retry_after)
    what = next((text for kind, text in _DEPENDENCIES.items() if isinstance(exc, kind)), None)
    if what is None:
        return None
    log.warning("dependency unavailable", error=f"{type(exc).__name__}: {exc}")
    return Problem(
        "unavailable", f"{what}; try again shortly", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


async def _on_unavailable(request: Request, exc: Exception) -> Response:
    problem = unavailable_problem(exc, request.app.state.settings.api_retry_after_seconds)
    assert problem is not None  # registered only for the kinds it maps
    return problem_response(problem, request.url.path)


def install(app: FastAPI) -> None:
    """Answer every error kind as problem+json."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for kind in [*_DEPENDENCIES, PoolTimeout]:
        app.add_exception_handler(kind, _on_unavailable)
