"""The shared Redis client rides out a Redis restart instead of failing the command that meets it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from framefleet.redis_client import get_redis
from tests import services


def test_a_command_during_a_redis_restart_waits_for_the_new_server(tmp_path: Path) -> None:
    servers = [services.start_redis(tmp_path / "redis")]
    port = servers[0].port
    client = get_redis(servers[0].url)

    def restart() -> None:
        time.sleep(0.7)
        servers.append(services.start_redis(tmp_path / "redis", port=port))

    restarter = threading.Thread(target=restart)
    try:
        assert client.set("before", "1")
        servers[0].proc.kill()
        servers[0].proc.wait()
        restarter.start()
        started = time.monotonic()
        assert client.set("during", "2")  # the server is down when this is sent
        waited = time.monotonic() - started
        restarter.join()
        assert client.get("during") == "2"
        assert waited >= 0.5, "the command was retried until the new server answered"
    finally:
        if restarter.is_alive():
            restarter.join()
        client.close()
        for server in servers:
            server.proc.kill()
            server.proc.wait()
