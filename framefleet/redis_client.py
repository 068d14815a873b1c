"""One Redis client per URL and process."""

from __future__ import annotations

import redis
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

# A blip (a restart, a Sentinel failover) is ridden out: a command that meets a dropped connection is retried
# on a new one for about 2-3 s before the error reaches the caller.
RETRIES = 5
RETRY_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.1)

_clients: dict[str, redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    """The process-wide client for `url` (default: the settings' Redis URL)."""
    if url is None:
        from framefleet.config import get_settings

        url = get_settings().redis_url
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=30,
            retry=Retry(RETRY_BACKOFF, RETRIES),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    return _clients[url]


def reset_clients() -> None:
    for client in _clients.values():
        client.close()
    _clients.clear()
