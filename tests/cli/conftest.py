"""The API served on a real socket for the client commands' tests (uvicorn in a thread of this process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn

from framefleet.api.app import create_app
from framefleet.config import Settings
from tests import services


@pytest.fixture(scope="module")
def api_url(test_env: dict[str, str]) -> Iterator[str]:
    port = services.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(Settings()), host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    services.wait_until(lambda: server.started, 15, "uvicorn")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(15)
