"""Fixtures for the console tests: a real API over HTTP (uvicorn), a real worker, Debian's chromium through
Playwright, keys of several roles and tenants. `make test` installs chromium (tests/players/install.sh)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from tests import services
from tests.conftest import make_clip
from tests.players.conftest import CHROMIUM, CHROMIUM_ARGS, INSTALLS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@dataclass(frozen=True)
class Stack:
    url: str
    app: Any
    keys: dict[str, str]  # admin, member, viewer (tenant A), other (an admin of tenant B), operator
    tenant: str
    short_clip: str  # storage URIs in the shared library
    long_clip: str


@pytest.fixture(scope="module")
def stack(test_env: dict[str, str], ffmpeg: str, media_root: Path, session_dir: Path) -> Iterator[Stack]:
    import uuid

    from framefleet.api.app import create_app
    from framefleet.config import get_settings
    from framefleet.db.session import session_scope
    from framefleet.keys import create_key

    make_clip(ffmpeg, media_root / "inputs" / "console-short.mp4", seconds=4, size="320x240")
    make_clip(ffmpeg, media_root / "inputs" / "console-long.mp4", seconds=60, size="320x240", audio=False)
    tenant, other = f"c-{uuid.uuid4().hex[:6]}", f"o-{uuid.uuid4().hex[:6]}"
    keys: dict[str, str] = {}
    with session_scope() as session:
        for role in ("admin", "member", "viewer", "operator"):
            keys[role], _ = create_key(session, tenant=tenant, role=role)
        keys["other"], _ = create_key(session, tenant=other, role="admin")
    env = {**test_env, "FRAMEFLEET_RETRY_MAX_ATTEMPTS": "1", "FRAMEFLEET_PROGRESS_EVENT_INTERVAL": "0.1"}
    worker = services.start_worker(env, session_dir / "logs" / "worker-console.log", name="console")
    app = create_app(get_settings())
    port = services.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    library = (media_root / "inputs").as_uri()
    yield Stack(
        url=f"http://127.0.0.1:{port}",
        app=app,
        keys=keys,
        tenant=tenant,
        short_clip=f"{library}/console-short.mp4",
        long_clip=f"{library}/console-long.mp4",
    )
    server.should_exit = True
    thread.join(15)
    services.stop(worker, timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the Python package playwright is missing: {INSTALLS} with the dev extras")
    if not CHROMIUM.exists():
        pytest.fail(f"Debian's chromium ({CHROMIUM}) is missing: {INSTALLS}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
