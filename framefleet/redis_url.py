"""Where Redis is: one server, or the master of a Redis Sentinel group (pure parsing, no connections).

FRAMEFLEET_REDIS_URL takes redis-py's own forms (`redis://`, `rediss://`, `unix://`) or

    redis+sentinel://[[username]:password@]host1[:port],host2[:port],.../<master-name>[/<db>][?sentinel_password=S]

The hosts are the Sentinels (port 26379 when left out), `master-name` is the group's name in their
configuration, `db` the database number (default 0). The password (and username) are the Redis servers';
Sentinels that require a password of their own get it from `sentinel_password`. Every part is
percent-decoded, so a password may hold any character.

The same URL serves the Celery broker (kombu's `sentinel://` transport, `master_name` in its transport
options) and every redis-py client (`Sentinel(...).master_for(...)`), so a failover is followed by all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
PLAIN_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class RedisTarget:
    """A parsed FRAMEFLEET_REDIS_URL: `url` for one server, or `sentinels` + `master` for a Sentinel group."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(url: str) -> RedisTarget:
    """The target `url` names; ValueError (saying which part is wrong) for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in (*PLAIN_SCHEMES, SENTINEL_SCHEME):
        raise ValueError(
            f"FRAMEFLEET_REDIS_URL must start with redis://, rediss://, unix:// or {SENTINEL_SCHEME}://"
        )
    if scheme.lower() != SENTINEL_SCHEME:
        return RedisTarget(url=url)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    segments = [unquote(s) for s in path.split("/")] if path else []
    if not segments or not segments[0]:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL needs the master's name: .../<master-name>/<db>")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise ValueError(f"{SENTINEL_SCHEME}:// URL path must be /<master-name> or /<master-name>/<db>")
    # Percent-decoded only: a '+' in a password is a plus, not the space a form encoding would make of it.
    pairs = (part.partition("=") for part in query.split("&") if part)
    options = {unquote(name): unquote(value) for name, _, value in pairs}
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: unknown option(s) {', '.join(sorted(unknown))}")
    return RedisTarget(
        url=url,
        sentinels=sentinels,
        master=segments[0],
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password"),
    )


def _host_port(part: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6-address]:port` as (host, port)."""
    if part.startswith("["):
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{SENTINEL_SCHEME}:// URL: bad Sentinel address {part!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: a Sentinel address is empty")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"{SENTINEL_SCHEME}:// URL: bad port in Sentinel address {part!r}")
    return host, int(port_text) if port_text else SENTINEL_PORT


def celery_broker(target: RedisTarget) -> tuple[str, dict[str, Any]]:
    """The Celery broker URL and the transport options that reach `target`.

    kombu's Sentinel transport takes one `sentinel://` URL per Sentinel, joined by `;`, each carrying the
    Redis servers' credentials and the database; the master's name goes in the transport options.
    """
    if not target.is_sentinel:
        return target.url, {}
    auth = ""
    if target.password is not None or target.username:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    urls = [f"sentinel://{auth}{_netloc(host)}:{port}/{target.db}" for host, port in target.sentinels]
    options: dict[str, Any] = {"master_name": target.master}
    if target.sentinel_password is not None:
        options["sentinel_kwargs"] = {"password": target.sentinel_password}
    return ";".join(urls), options


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host

