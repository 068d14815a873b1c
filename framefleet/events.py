"""Job events: one Redis Stream per job, read by the SSE endpoint and the CLI.

Event types: state, progress, output, metrics, done. The stream id is the SSE event id, so a client
resumes with Last-Event-ID and a late client replays the whole history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from framefleet.webhooks import feed

EVENT_TYPES = ("state", "progress", "output", "metrics", "done")
STREAM_MAXLEN = 10_000


def stream_key(job_id: str) -> str:
    return f"framefleet:job:{job_id}:events"


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


def append(pipe: Any, job_id: str, event_type: str, data: dict[str, Any]) -> None:
    """Queue one event on `pipe`: the job's stream, and the webhook feed when webhooks report it."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    fields: dict[Any, Any] = {
        "type": event_type,
        "data": json.dumps(data, default=str, separators=(",", ":")),
    }
    pipe.xadd(stream_key(job_id), fields, maxlen=STREAM_MAXLEN, approximate=True)
    hook = feed.webhook_type(event_type, data)
    if hook is not None:
        feed.add(pipe, job_id, hook, str(data.get("name") or data.get("reason") or "")[:200])


def publish(client: redis.Redis, job_id: str, event_type: str, data: dict[str, Any]) -> str:
    """Append one event (and its webhook feed entry, in the same round trip); returns its stream id."""
    pipe = client.pipeline(transaction=False)
    append(pipe, job_id, event_type, data)
    return str(pipe.execute()[0])


def publish_batch(
    client: redis.Redis,
    job_id: str,
    items: list[tuple[str, dict[str, Any]]],
    *,
    ttl_seconds: int | None = None,
    delete: tuple[str, ...] = (),
) -> None:
    """Publish `items` in order in one round trip (then expire the stream, delete `delete` keys).

    Not a transaction: each event is appended on its own, as `publish` would, just without a round trip
    per event. A short job ends with several events, and each round trip was a visible share of its cost.
    """
    pipe = client.pipeline(transaction=False)
    for event_type, data in items:
        append(pipe, job_id, event_type, data)
    if ttl_seconds is not None:
        pipe.expire(stream_key(job_id), ttl_seconds)
    if delete:
        pipe.delete(*delete)
    pipe.execute()


def expire(client: redis.Redis, job_id: str, ttl_seconds: int) -> None:
    client.expire(stream_key(job_id), ttl_seconds)


def _decode(entries: Any) -> list[Event]:
    # The client decodes responses, so ids and fields are str (redis-py's stubs cannot express that).
    return [Event(id=entry_id, type=f["type"], data=json.loads(f["data"])) for entry_id, f in entries or []]


def history(client: redis.Redis, job_id: str, after: str | None = None) -> list[Event]:
    """Every event after `after` (exclusive), or from the start."""
    start = f"({after}" if after else "-"
    return _decode(client.xrange(stream_key(job_id), min=start, max="+"))


def wait(client: redis.Redis, job_id: str, after: str, block_ms: int) -> list[Event]:
    """Block up to `block_ms` for events after `after` ('0' for from the start)."""
    answer: Any = client.xread({stream_key(job_id): after}, block=block_ms, count=100)
    if not answer:
        return []
    _key, entries = answer[0]
    return _decode(entries)


def is_valid_id(value: str) -> bool:
    left, sep, right = value.partition("-")
    return left.isdigit() and (not sep or right.isdigit())
