"""Server-Sent Events for a job's event stream (framefleet.events), read with redis.asyncio.

The Redis Stream id is the SSE id, so a client resumes with Last-Event-ID. The stream ends after the
`done` event. If the database says the job ended but no `done` arrives (the stream expired, or Redis was
flushed), a `done` is made from the database row after a short grace, so a client never waits forever.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import redis.asyncio as aioredis

from framefleet.events import Event, stream_key

KEEPALIVE = ": keep-alive\n\n"
CLIENT_NAME = "framefleet-sse"
# How long to wait for a `done` event once the database says the job ended.
DONE_GRACE_MS = 1000
READ_COUNT = 100

EndCheck = Callable[[], Awaitable[dict[str, Any] | None]]


def format_event(event_type: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One SSE message; data is compact single-line JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_type}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _decode(entries: Any) -> list[Event]:
    # decode_responses=True: ids and fields are str.
    return [Event(id=entry_id, type=f["type"], data=json.loads(f["data"])) for entry_id, f in entries]


async def job_event_stream(
    *,
    redis_url: str,
    job_id: str,
    after: str | None,
    keepalive_seconds: float,
    ended: dict[str, Any] | None,
    check_ended: EndCheck,
) -> AsyncIterator[str]:
    """SSE text for one job: history after `after`, then live events until `done`.

    `ended` is the final-state payload when the job had already ended at connect time; `check_ended`
    re-reads it from the database while the stream is idle.
    """
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, client_name=CLIENT_NAME)
    key = stream_key(job_id)
    keepalive_ms = max(1, int(keepalive_seconds * 1000))
    try:
        last = after or "0"
        entries = await client.xrange(key, min=f"({after}" if after else "-", max="+")
        for event in _decode(entries):
            yield format_event(event.type, event.data, event.id)
            last = event.id
            if event.type == "done":
                return
        while True:
            block = min(DONE_GRACE_MS, keepalive_ms) if ended is not None else keepalive_ms
            answer: Any = await client.xread({key: last}, block=block, count=READ_COUNT)
            if answer:
                for event in _decode(answer[0][1]):
                    yield format_event(event.type, event.data, event.id)
                    last = event.id
                    if event.type == "done":
                        return
                continue
            if ended is not None:
                yield format_event("done", ended)
                return
            yield KEEPALIVE
            ended = await check_ended()
    finally:
        # Shielded: on client disconnect this generator is cancelled, and the connection must still close.
        with anyio.CancelScope(shield=True):
            await client.aclose()
