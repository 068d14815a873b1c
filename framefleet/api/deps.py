"""Request dependencies as Annotated aliases: settings, database session, Redis, the authenticated caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
import redis
from fastapi import Depends, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from framefleet.api.auth import MISSING, STATE_KEY, unauthorized
from framefleet.api.errors import Problem
from framefleet.config import Settings
from framefleet.db.session import limits_of, session_factory
from framefleet.keys import Principal
from framefleet.redis_client import get_redis
from framefleet.tenancy.permissions import PERMISSIONS, allows

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
    session = session_factory(settings.database_url, limits_of(settings))()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Ending an open transaction talks to the database: not on the event loop. Not behind the shared
            # thread limit either (as FastAPI does for its own exits): this session holds a connection, and
            # waiting in line behind requests that need one could exhaust the pool.
            await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
        else:
            session.close()


# Function scope: the session closes as soon as the endpoint returns, so a long SSE stream holds no
# database connection.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def new_session(settings: SettingsDep) -> Session:
    """A session for a route that reaches the database only through `in_thread` (which closes it after
    each use), so nothing is left to unwind: on POST /v1/jobs, which usually needs no database at all,
    unwinding a generator dependency per request was a visible share of the API's CPU."""
    return session_factory(settings.database_url, limits_of(settings))()


ThreadSessionDep = Annotated[Session, Depends(new_session)]

T = TypeVar("T")


async def in_thread(session: Session, work: Callable[..., T], *args: Any) -> T:
    """`work(session, *args)` in a worker thread, giving the connection back to the pool before returning.

    For async routes: a connection never stays checked out while the request awaits something else, so
    the pool only has to cover the threads.
    """

    def run() -> T:
        try:
            return work(session, *args)
        finally:
            session.close()

    return await run_in_threadpool(run)


async def get_redis_client(settings: SettingsDep) -> redis.Redis:
    """The process-wide (synchronous) Redis client for the app's Redis URL."""
    return get_redis(settings.redis_url)


RedisDep = Annotated[redis.Redis, Depends(get_redis_client)]


async def get_principal(
    request: Request,
    # Read by the authentication middleware, which has already checked them; declared here for OpenAPI.
    _api_key: Annotated[str | None, Security(_api_key_header)],
    _bearer_token: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    """The caller behind X-API-Key or `Authorization: Bearer <key>`, authenticated by AuthMiddleware."""
    principal: Principal | None = getattr(request.state, STATE_KEY, None)
    if principal is None:
        # Only a route outside the middleware's prefix could get here: refuse rather than guess.
        raise unauthorized(MISSING, invalid=False)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class Requires:
    """The dependency by which a route declares the one permission it needs (tenancy/permissions.py).

    `Depends(Requires("jobs:submit"))` answers 403 to a key whose role lacks it and gives the route the
    principal. tests/api/test_permissions.py walks every /v1/ route and fails on one that declares none.
    """

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise KeyError(f"{permission!r} is not in the permission table")
        self.permission = permission

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not allows(principal.role, self.permission):
            raise Problem(
                "forbidden",
                f"role {principal.role!r} lacks the permission {self.permission!r}",
                extensions={"permission": self.permission},
            )
        return principal

    def __repr__(self) -> str:
        return f"Requires({self.permission!r})"


def requires(permission: str) -> Any:
    """`Annotated[Principal, requires("jobs:read")]` in a route's signature.

    Declared as a security scope too, so the OpenAPI document lists the permission in each operation's
    security requirement (and api/openapi.py copies it to `x-permission`).
    """
    return Security(Requires(permission), scopes=[permission])
