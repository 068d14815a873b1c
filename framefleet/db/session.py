"""Engine and session set-up. SQLite runs in WAL mode; PostgreSQL is chosen by the database URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from framefleet.config import Settings


def normalise_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@dataclass(frozen=True)
class PoolLimits:
    """Connections an engine keeps (size), may add under load (overflow), and how long a checkout waits."""

    size: int = 10
    overflow: int = 10
    timeout_seconds: float = 1.0


def limits_of(settings: Settings) -> PoolLimits:
    """The pool limits `settings` ask for."""
    return PoolLimits(settings.db_pool_size, settings.db_max_overflow, settings.db_pool_timeout_seconds)


def default_limits() -> PoolLimits:
    """The pool limits of this process's settings."""
    from framefleet.config import get_settings

    return limits_of(get_settings())


def make_engine(url: str, limits: PoolLimits | None = None) -> sa.Engine:
    limits = limits or default_limits()
    # A short checkout timeout: when every connection is taken the caller fails fast (the API answers 503)
    # instead of queueing for the default 30 s behind work whose clients may long have gone.
    pool = {"pool_size": limits.size, "max_overflow": limits.overflow, "pool_timeout": limits.timeout_seconds}
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10}, **pool)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, **pool)


_engines: dict[tuple[str, PoolLimits], sa.Engine] = {}
_factories: dict[tuple[str, PoolLimits], sessionmaker[Session]] = {}


def engine_for(url: str, limits: PoolLimits | None = None) -> sa.Engine:
    key = (url, limits or default_limits())
    if key not in _engines:
        _engines[key] = make_engine(*key)
    return _engines[key]


def _factory(url: str, limits: PoolLimits | None) -> sessionmaker[Session]:
    key = (url, limits or default_limits())
    if key not in _factories:
        _factories[key] = sessionmaker(engine_for(*key), expire_on_commit=False)
    return _factories[key]


def session_factory(url: str | None = None, limits: PoolLimits | None = None) -> sessionmaker[Session]:
    if url is None:
        from framefleet.config import get_settings

        url = get_settings().database_url
    return _factory(url, limits)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_all() -> None:
    """Drop pooled connections (after fork, or between test databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()
