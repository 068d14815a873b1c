"""Session fixtures: real Redis, the database chosen by FRAMEFLEET_TEST_DB (sqlite | postgres), media
roots, settings, and helpers to make clips and API keys. Worker fixtures live in tests/integration."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests import services

if TYPE_CHECKING:
    from framefleet.config import Settings

TEST_DB = os.environ.get("FRAMEFLEET_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("framefleet")


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[services.RedisServer]:
    server = services.start_redis(session_dir / "redis")
    yield server
    services.stop(server.proc)


@pytest.fixture(scope="session")
def database_url(session_dir: Path) -> Iterator[str]:
    from framefleet.db.migrate import upgrade

    if TEST_DB == "postgres":
        server = services.start_postgres(session_dir / "pg")
        url = server.url
        try:
            upgrade(url)
            yield url
        finally:
            from framefleet.db.session import dispose_all

            dispose_all()
            server.stop()
    elif TEST_DB == "sqlite":
        url = f"sqlite:///{session_dir / 'framefleet.db'}"
        upgrade(url)
        yield url
    else:
        pytest.fail(f"FRAMEFLEET_TEST_DB must be sqlite or postgres, not {TEST_DB!r}")


def make_own_database(database_url: str, folder: Path) -> str:
    """An empty database of its own, on the suite's kind of server, for a stack that must not see (or
    reconcile) the suite's jobs. Whoever uses it migrates it."""
    if TEST_DB == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / f'own-{uuid.uuid4().hex[:8]}.db'}"
    import sqlalchemy as sa

    from framefleet.db.session import normalise_url

    name = f"own_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(normalise_url(database_url))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return database_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture()
def own_database_url(database_url: str, tmp_path: Path) -> str:
    """See make_own_database."""
    return make_own_database(database_url, tmp_path)


@pytest.fixture(scope="session")
def media_root(session_dir: Path) -> Path:
    root = session_dir / "media"
    (root / "outputs").mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def test_env(
    session_dir: Path, redis_server: services.RedisServer, database_url: str, media_root: Path
) -> Iterator[dict[str, str]]:
    """FRAMEFLEET_* settings for this test session, applied to this process and passed to children."""
    values = {
        "FRAMEFLEET_ENV": "test",
        "FRAMEFLEET_DATA_DIR": str(session_dir / "data"),
        "FRAMEFLEET_DATABASE_URL": database_url,
        "FRAMEFLEET_REDIS_URL": redis_server.url,
        "FRAMEFLEET_STORAGE_ROOTS": f'["{media_root}"]',
        "FRAMEFLEET_OUTPUT_ROOT": (media_root / "outputs").as_uri(),
        # The session's clips (media_root/inputs) are a library every tenant may read, as an operator
        # would grant one; files a test writes go to its tenant's own folder (tenant_dir).
        "FRAMEFLEET_SHARED_STORAGE": json.dumps([(media_root / "inputs").as_uri(), "s3://media-shared"]),
        "FRAMEFLEET_S3_ROOTS": '["s3://media-in", "s3://media-out"]',
        "FRAMEFLEET_LOG_FORMAT": "json",
        "FRAMEFLEET_PROGRESS_DB_INTERVAL": "0.5",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    _reset_caches()
    yield {**os.environ, **values}
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    _reset_caches()


def _reset_caches() -> None:
    from framefleet.config import reset_settings_cache
    from framefleet.redis_client import reset_clients

    reset_settings_cache()
    reset_clients()


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from framefleet.media.ffmpeg import ffmpeg_path

    return ffmpeg_path()


def make_clip(
    ffmpeg: str,
    path: Path,
    *,
    seconds: float = 2,
    size: str = "320x240",
    rate: int = 25,
    audio: bool = True,
    video: bool = True,
    extra: list[str] | None = None,
) -> Path:
    """A test clip from lavfi's testsrc2 and sine sources."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(rate)]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    args += [*(extra or []), str(path)]
    subprocess.run(args, check=True)
    return path


@pytest.fixture(scope="session")
def clip(ffmpeg: str, media_root: Path) -> Path:
    """A 2 s 320x240 H.264/AAC clip inside the media root."""
    return make_clip(ffmpeg, media_root / "inputs" / "clip.mp4")


def library_uri(name: str) -> str:
    """A file in the session's shared input library (readable by every tenant). Read from the environment
    at call time: bodies built while tests are collected, before test_env, get a placeholder."""
    shared = json.loads(os.environ.get("FRAMEFLEET_SHARED_STORAGE") or '["file:///library"]')
    return f"{shared[0]}/{name}"


def tenant_dir(tenant: str) -> Path:
    """The tenant's own folder in the first storage root, as the product computes it (created)."""
    from framefleet.config import get_settings
    from framefleet.storage.namespace import namespace_for

    folder = namespace_for(get_settings(), tenant).local_roots(write=True)[0]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture()
def tenant_key(test_env: dict[str, str]) -> tuple[str, str]:
    """A fresh tenant and its API key: (tenant name, raw key)."""
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        raw, _ = create_key(session, tenant=tenant)
    return tenant, raw


def fresh_stack_settings(data_dir: Path) -> Settings:
    """The storage settings a stack started with defaults in `data_dir` has, whatever FRAMEFLEET_* the suite
    has put in the environment (pydantic-settings would read those first)."""
    from framefleet.config import Settings

    media = data_dir / "media"
    return Settings(
        data_dir=data_dir,
        storage_roots=[media],
        output_root=(media / "outputs").as_uri(),
        s3_roots=[],
        shared_storage=[],
        shared_storage_writable=[],
    )
