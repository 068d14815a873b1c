"""Server-Sent Events for a job's event stream (framefleet.events), served from the process's EventHub.

The Redis Stream id is the SSE id, so a client resumes with Last-Event-ID. The stream ends after the
`done` event. If the database says the job ended but no `done` arrives (the stream expired, or Redis was
flushed), a `done` is made from the database row after a short grace, so a client never waits forever.
An open stream holds no database session, no thread and no Redis connection of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from framefleet.api.hub import ZERO, EventHub, format_event, parse_id
from framefleet.api.schemas import ProblemView

KEEPALIVE = ": keep-alive\n\n"
# What every event stream route may answer instead of a stream (api/limits.py StreamLimits).
STREAM_LIMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"model": ProblemView, "description": "This tenant has its limit of open streams (Retry-After)"},
    503: {"model": ProblemView, "description": "This API process has its limit of streams (Retry-After)"},
}
# How long to wait for a `done` event once the database says the job ended.
DONE_GRACE_SECONDS = 1.0


def done_grace(keepalive_seconds: float) -> float:
    return min(DONE_GRACE_SECONDS, keepalive_seconds)


async def live_stream(
    *, hub: EventHub, job_id: str, after: str | None, keepalive_seconds: float
) -> AsyncIterator[str]:
    """SSE text for a job still going at connect time: history after `after`, then live until `done`."""
    last = parse_id(after) if after else ZERO
    subscriber = hub.subscribe(job_id, last)
    try:
        if subscriber.floor > last:
            async for delivery in hub.replay(job_id, last, f"{subscriber.floor[0]}-{subscriber.floor[1]}"):
                yield delivery.text
                last = delivery.id or last
                if delivery.type == "done":
                    return
        while True:
            if subscriber.overflowed and subscriber.queue.empty():
                return  # cut off as too slow: the client resumes with the last id it got
            try:
                async with asyncio.timeout(keepalive_seconds):
                    delivery = await subscriber.queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            if delivery.id is not None:
                if delivery.id <= last:
                    continue  # already sent from the replay
                last = delivery.id
            yield delivery.text
            if delivery.type == "done":
                return
    finally:
        hub.unsubscribe(subscriber)


async def ended_stream(
    *, hub: EventHub, job_id: str, after: str | None, ended: dict[str, Any], grace_seconds: float
) -> AsyncIterator[str]:
    """SSE text for a job that had ended at connect time: its history from Redis, then `done`.

    The `done` event is published just after the database commit, so a stream that lacks it is read once
    more after a grace before one is made from `ended` (the final state the database holds).
    """
    last = parse_id(after) if after else None
    for attempt in range(2):
        async for delivery in hub.replay(job_id, last):
            yield delivery.text
            last = delivery.id
            if delivery.type == "done":
                return
        if attempt == 0:
            await asyncio.sleep(grace_seconds)
    yield format_event("done", ended)


class EventStreamResponse(StreamingResponse):
    """A text/event-stream answer that calls `on_close` however it ends (even if it never started)."""

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
