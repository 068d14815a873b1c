"""The shared Redis client rides out a Redis restart instead of failing the command that meets it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from framefleet.redis_client import get_redis
from tests import services


def test_a_command_during_a_redis_restart_waits_for_the_new_server(tmp_path: Path) -> None:
    server = services.start_redis(tmp_path / "redis")
    client = get_redis(server.url)
    try:
        assert client.set("before", "1")
        server.proc.kill()
        server.proc.wait()

        def restart() -> None:
            time.sleep(0.7)
            nonlocal server
            server = services.start_redis(tmp_path / "redis", port=server.port)

        restarter = threading.Thread(target=restart)
        restarter.start()
        started = time.monotonic()
        assert client.set("during", "2")  # the server is down when this is sent
        waited = time.monotonic() - started
        restarter.join()
        assert client.get("during") == "2"
        assert waited >= 0.5, "the command was retried until the new server answered"
    finally:
        client.close()
        server.proc.kill()
        server.proc.wait()
