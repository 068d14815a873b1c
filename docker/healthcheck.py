"""Container health check of the FrameFleet image: one script that checks whichever service PID 1 runs.

PID 1 is `tini -- framefleet-entrypoint [--reload] <service> ...` (or, without an init, the `framefleet`
process the entrypoint became), so the service is read from /proc/1/cmdline:
- api: GET /healthz answers 200;
- flower: GET /healthcheck answers 200 (Flower serves it without authentication);
- worker: the worker node answers a Celery ping over the broker;
- beat, webhooks (the webhook sender): the broker (through Sentinel: its master) answers PING (neither
  works without it, and neither has a port of its own);
- anything else (one-shot commands): healthy while it runs.
Exit status 0 is healthy, 1 unhealthy, as HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

TIMEOUT_SECONDS = 5.0
LAUNCHERS = ("framefleet-entrypoint", "framefleet")


def service_argv(cmdline: bytes) -> list[str]:
    """The launcher's arguments (service first) from PID 1's NUL-separated command line."""
    argv = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
    for index, part in enumerate(argv):
        if Path(part).name in LAUNCHERS:
            rest = argv[index + 1 :]
            return rest[1:] if rest[:1] == ["--reload"] else rest
    return []


def option(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv, if given."""
    for index, part in enumerate(argv):
        if part == name and index + 1 < len(argv):
            return argv[index + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    return None


def http_ok(url: str) -> bool:
    """Whether GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status) == 200
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return False


def worker_ok(argv: Sequence[str]) -> bool:
    """Whether this container's worker node answers a ping."""
    from framefleet.celery_app import app

    pool = option(argv, "--pool") or os.environ.get("FRAMEFLEET_POOL", "cpu")
    name = (option(argv, "--name") or f"{pool}@%h").replace("%h", socket.gethostname())
    replies = app.control.ping(destination=[name], timeout=TIMEOUT_SECONDS)
    if not any(name in reply for reply in replies):
        print(f"worker {name} did not answer a ping", file=sys.stderr)
        return False
    return True


def broker_ok() -> bool:
    """Whether Redis answers PING."""
    import redis

    from framefleet.config import get_settings
    from framefleet.redis_client import make_redis

    client = make_redis(
        get_settings().redis_url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        print(f"redis: {exc}", file=sys.stderr)
        return False


def check(argv: Sequence[str]) -> bool:
    """Health of the service that argv starts."""
    service = argv[0] if argv else "api"
    if service == "api":
        port = option(argv, "--port") or os.environ.get("FRAMEFLEET_API_PORT", "8000")
        return http_ok(f"http://127.0.0.1:{port}/healthz")
    if service == "flower":
        return http_ok(f"http://127.0.0.1:{os.environ.get('FRAMEFLEET_FLOWER_PORT', '5555')}/healthcheck")
    if service == "worker":
        return worker_ok(argv)
    if service in ("beat", "webhooks"):
        return broker_ok()
    return True


def main() -> int:
    """Exit 0 when the container's service is healthy."""
    try:
        cmdline = Path("/proc/1/cmdline").read_bytes()
    except OSError as exc:
        print(f"cannot read PID 1's command line: {exc}", file=sys.stderr)
        return 1
    try:
        healthy = check(service_argv(cmdline))
    except Exception as exc:  # an unreachable broker, a refused connection: unhealthy, in one line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        healthy = False
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
