"""Request dependencies as Annotated aliases: settings, database session, Redis, the authenticated caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from framefleet.api.errors import WWW_AUTHENTICATE, Problem
from framefleet.api.key_cache import KeyCache
from framefleet.config import Settings
from framefleet.db.session import session_factory
from framefleet.keys import Principal, authenticate
from framefleet.redis_client import get_redis

SUBMIT_ROLES = frozenset({"admin", "submitter"})

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (ff_…)")
_bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token")


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """A session for one request; routes commit through the service, the rest is rolled back."""
    # Async so that opening it costs no thread hop (no I/O happens until the first query).
    session = session_factory(settings.database_url)()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Ending an open transaction talks to the database: not on the event loop.
            await run_in_threadpool(session.close)
        else:
            session.close()


# Function scope: the session closes as soon as the endpoint returns, so a long SSE stream holds no
# database connection.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_redis_client(settings: SettingsDep) -> redis.Redis:
    """The process-wide (synchronous) Redis client for the app's Redis URL."""
    return get_redis(settings.redis_url)


RedisDep = Annotated[redis.Redis, Depends(get_redis_client)]


def _unauthorized(detail: str, *, invalid: bool) -> Problem:
    challenge = WWW_AUTHENTICATE + (', error="invalid_token"' if invalid else "")
    return Problem("unauthorized", detail, headers={"WWW-Authenticate": challenge})


async def get_principal(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller behind X-API-Key or `Authorization: Bearer <key>`; 401 when missing or unknown."""
    raw = (api_key or (bearer.credentials if bearer is not None else None) or "").strip()
    if not raw:
        raise _unauthorized("send an API key in X-API-Key or as `Authorization: Bearer <key>`", invalid=False)
    cache: KeyCache = request.app.state.key_cache
    principal = cache.get(raw)
    if principal is None:
        principal = await run_in_threadpool(authenticate, session, raw)
        if principal is None:
            raise _unauthorized("the API key is unknown or revoked", invalid=True)
        cache.put(raw, principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def require_submitter(principal: CurrentPrincipal) -> Principal:
    """The caller, if its role may change jobs (submit, cancel); 403 for viewers."""
    if principal.role not in SUBMIT_ROLES:
        raise Problem("forbidden", f"role {principal.role!r} may read jobs but not submit or cancel them")
    return principal


SubmitterPrincipal = Annotated[Principal, Depends(require_submitter)]
