"""One Redis client per URL and process: one server, or a Sentinel group's master (see redis_url.py)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

from framefleet.redis_url import RedisTarget, parse_redis_url

# A blip (a restart, a Sentinel failover) is ridden out: a command that meets a dropped connection is retried
# on a new one for about 2-3 s before the error reaches the caller. Under Sentinel each new connection asks
# the Sentinels where the master is, so a retry after a promotion reaches the new master.
RETRIES = 5
RETRY_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.1)
# A Sentinel that does not answer within this is skipped for the next one.
SENTINEL_TIMEOUT_SECONDS = 2.0

_clients: dict[str, redis.Redis] = {}


def _sentinel_kwargs(target: RedisTarget) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
    }
    if target.sentinel_password is not None:
        kwargs["password"] = target.sentinel_password
    return kwargs


def _server_kwargs(target: RedisTarget) -> dict[str, Any]:
    return {"db": target.db, "username": target.username, "password": target.password}


def make_redis(url: str, **options: Any) -> redis.Redis:
    """A new client for `url`; `options` are redis-py connection options (decode_responses, timeouts...)."""
    target = parse_redis_url(url)
    if not target.is_sentinel:
        return redis.Redis.from_url(url, **options)
    sentinel = redis.sentinel.Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target))
    return sentinel.master_for(target.master, **_server_kwargs(target), **options)


def make_async_redis(url: str, *, single_connection_client: bool = False, **options: Any) -> aioredis.Redis:
    """A new asyncio client for `url`, like make_redis."""
    target = parse_redis_url(url)
    if not target.is_sentinel:
        pool = aioredis.ConnectionPool.from_url(url, **options)
    else:
        sentinel = aiosentinel.Sentinel(list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(target))
        pool = aiosentinel.SentinelConnectionPool(
            target.master, sentinel, is_master=True, **_server_kwargs(target), **options
        )
    return aioredis.Redis(connection_pool=pool, single_connection_client=single_connection_client)


def get_redis(url: str | None = None) -> redis.Redis:
    """The process-wide client for `url` (default: the settings' Redis URL)."""
    if url is None:
        from framefleet.config import get_settings

        url = get_settings().redis_url
    if url not in _clients:
        _clients[url] = make_redis(
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
