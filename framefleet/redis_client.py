"""One Redis client per URL and process."""

from __future__ import annotations

import redis

_clients: dict[str, redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    if url is None:
        from framefleet.config import get_settings

        url = get_settings().redis_url
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
    return _clients[url]


def reset_clients() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()
