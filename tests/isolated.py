"""A private database (and Redis keyspace) for tests whose subject acts on *every* job it finds: the reaper,
the reconciler, aging. Run against the shared session database they would also act on other tests' jobs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import TEST_DB


def create_database(base_url: str, name: str) -> str:
    """A fresh, empty PostgreSQL database beside the session's; returns its URL."""
    from framefleet.db.session import normalise_url

    engine = sa.create_engine(normalise_url(base_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def private_database(session_url: str, folder: Path) -> str:
    """A migrated database of its own, of the same kind as the session's (FRAMEFLEET_TEST_DB)."""
    from framefleet.db.migrate import upgrade

    if TEST_DB == "postgres":
        url = create_database(session_url, f"private_{uuid.uuid4().hex[:10]}")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / f'private-{uuid.uuid4().hex[:8]}.db'}"
    upgrade(url)
    return url


@contextmanager
def settings_env(values: dict[str, str]) -> Iterator[None]:
    """FRAMEFLEET_* values applied to this process (settings, Redis clients and engines reset) for a block."""
    from framefleet.config import reset_settings_cache
    from framefleet.db.session import dispose_all
    from framefleet.redis_client import reset_clients

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    reset_settings_cache()
    reset_clients()
    dispose_all()
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        reset_settings_cache()
        reset_clients()
        dispose_all()
