"""The event hub: one Redis reader per API process feeds every event stream the process serves.

A client following a job subscribes here instead of reading Redis itself. One task does a blocking XREAD
over the streams of every job followed in this process (one connection, however many clients), formats
each event once and puts it in each subscriber's bounded queue. A subscriber that falls `buffer` events
behind is cut off (it resumes with Last-Event-ID) so it never holds up the others.

The hand-off from history to live events, without gaps or duplicates: a job's channel has a cursor, the id
of the last event the reader handed out for it. A new subscriber is registered and reads its floor (that
cursor) in one step, with no await between: every later event reaches its queue, and it replays
(after, floor] itself with XRANGE. A channel's first subscriber sets the cursor to its own starting point,
so the reader delivers its history. Subscribers also drop any event at or before the last one they sent,
which covers a client resuming from an id the reader has not reached yet.

A job whose stream never brings a `done` (it expired, Redis was flushed, or the job ended without an
announcement) still ends its streams: when a channel has been idle for `idle_check_seconds`, the hub asks
the database once for the whole channel whether the job ended, and after a grace sends a `done` made
from that answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from framefleet.events import stream_key
from framefleet.logging import get_logger
from framefleet.redis_client import make_async_redis

log = get_logger(__name__)

CLIENT_NAME = "framefleet-sse"
StreamId = tuple[int, int]
ZERO: StreamId = (0, 0)
# Events per stream per XREAD, and per XRANGE page of a replay.
READ_COUNT = 100
REPLAY_PAGE = 500
# How long the reader blocks in XREAD: also how soon it starts reading a newly followed job.
BLOCK_MS = 100
# Connections for replays (XRANGE): replays beyond it wait their turn rather than open more.
REPLAY_CONNECTIONS = 4
REDIS_RETRY_SECONDS = 0.5

EndCheck = Callable[[str], Awaitable[dict[str, Any] | None]]


def parse_id(value: str) -> StreamId:
    """A Redis Stream id ("1700000000000-3", or just milliseconds) as a comparable pair."""
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def format_id(value: StreamId) -> str:
    return f"{value[0]}-{value[1]}"


def format_event(event_type: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """One SSE message; data is compact single-line JSON."""
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_type}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


@dataclass(frozen=True)
class Delivery:
    """One event as SSE text, formatted once for every subscriber; `id` is None for a made-up `done`."""

    id: StreamId | None
    type: str
    text: str


def _delivery(entry_id: str, fields: dict[str, str]) -> Delivery:
    # The stored data is already compact JSON: re-encoding it would only cost time.
    text = f"id: {entry_id}\nevent: {fields['type']}\ndata: {fields['data']}\n\n"
    return Delivery(parse_id(entry_id), fields["type"], text)


class Subscriber:
    """One client's place in a job's channel: a bounded queue, and the floor it must replay up to."""

    def __init__(self, job_id: str, floor: StreamId, buffer: int) -> None:
        self.job_id = job_id
        self.floor = floor
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(buffer)
        self.overflowed = False


@dataclass
class _Channel:
    cursor: StreamId
    subscribers: set[Subscriber] = field(default_factory=set)
    last_activity: float = field(default_factory=time.monotonic)
    ended: dict[str, Any] | None = None
    checking: bool = False
    final: Delivery | None = None


class EventHub:
    """Per-process fan-out of job events from Redis to local subscribers (see the module docstring)."""

    def __init__(
        self,
        redis_url: str,
        *,
        check_ended: EndCheck,
        idle_check_seconds: float,
        grace_seconds: float,
        buffer: int,
    ) -> None:
        self.check_ended = check_ended
        self.idle_check_seconds = idle_check_seconds
        self.grace_seconds = grace_seconds
        self.buffer = buffer
        self._reader = make_async_redis(
            redis_url, decode_responses=True, client_name=CLIENT_NAME, single_connection_client=True
        )
        self._replays = make_async_redis(redis_url, decode_responses=True, client_name=CLIENT_NAME)
        # Replays beyond REPLAY_CONNECTIONS wait here, so the pool never opens more (a Sentinel pool cannot
        # block the way a plain BlockingConnectionPool does, so the bound lives here for both).
        self._replay_slots = asyncio.Semaphore(REPLAY_CONNECTIONS)
        self._channels: dict[str, _Channel] = {}
        self._task: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def subscribers(self) -> int:
        """Subscribers across all channels (for tests and metrics)."""
        return sum(len(channel.subscribers) for channel in self._channels.values())

    @property
    def channels(self) -> int:
        return len(self._channels)

    def subscribe(self, job_id: str, after: StreamId) -> Subscriber:
        """Follow `job_id` from just after `after`; replay (after, subscriber.floor] before the queue."""
        channel = self._channels.get(job_id)
        if channel is None:
            channel = self._channels[job_id] = _Channel(cursor=after)
        subscriber = Subscriber(job_id, channel.cursor, self.buffer)
        channel.subscribers.add(subscriber)
        if channel.final is not None:
            subscriber.queue.put_nowait(channel.final)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read_loop(), name="event-hub-reader")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop delivering to `subscriber`; the last one out closes the channel (and, if none is left, the
        reader stops after its current read)."""
        channel = self._channels.get(subscriber.job_id)
        if channel is None:
            return
        channel.subscribers.discard(subscriber)
        if not channel.subscribers:
            del self._channels[subscriber.job_id]

    async def replay(self, job_id: str, after: StreamId | None, upto: str = "+") -> AsyncIterator[Delivery]:
        """The stored events in (after, upto], a page of XRANGE at a time."""
        start = f"({format_id(after)}" if after is not None and after != ZERO else "-"
        while True:
            key = stream_key(job_id)
            async with self._replay_slots:
                entries: Any = await self._replays.xrange(key, min=start, max=upto, count=REPLAY_PAGE)
            for entry_id, fields in entries:
                yield _delivery(entry_id, fields)
            if len(entries) < REPLAY_PAGE:
                return
            start = f"({entries[-1][0]}"

    async def close(self) -> None:
        """Stop reading and close the connections (the app is shutting down)."""
        for task in [self._task, *self._checks]:
            if task is not None:
                task.cancel()
        await self._reader.aclose()
        await self._replays.aclose()

    # ------------------------------------------------------------------ the reader

    async def _read_loop(self) -> None:
        while self._channels:
            # Channels that ended need no reading: their late subscribers replay and then get `final`.
            watched = {job_id: channel for job_id, channel in self._channels.items() if channel.final is None}
            cursors: dict[Any, Any] = {
                stream_key(job_id): format_id(channel.cursor) for job_id, channel in watched.items()
            }
            try:
                if cursors:
                    answer: Any = await self._reader.xread(cursors, block=BLOCK_MS, count=READ_COUNT)
                else:
                    answer = None
                    await asyncio.sleep(BLOCK_MS / 1000)
            except redis.RedisError as exc:
                # Subscribers keep their keep-alives meanwhile and get every event once Redis is back.
                log.warning("event hub cannot read Redis", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(REDIS_RETRY_SECONDS)
                continue
            now = time.monotonic()
            for key, entries in answer or []:
                job_id = key.split(":")[2]
                channel = self._channels.get(job_id)
                # Only to the channel this read was for: if its last subscriber left and a new one opened
                # the job again meanwhile, the new channel starts from its own cursor, and these entries
                # (read from the old one's) would make it skip the events in between.
                if channel is not None and channel is watched.get(job_id):
                    for entry_id, fields in entries:
                        self._deliver(channel, _delivery(entry_id, fields))
                    channel.last_activity = now
            self._look_after_idle(now)

    def _deliver(self, channel: _Channel, delivery: Delivery) -> None:
        if delivery.id is not None:
            channel.cursor = delivery.id
        if delivery.type == "done":
            channel.final = delivery
        for subscriber in list(channel.subscribers):
            try:
                subscriber.queue.put_nowait(delivery)
            except asyncio.QueueFull:
                # Too slow: cut it off rather than hold up the others; it resumes from its last id.
                subscriber.overflowed = True
                channel.subscribers.discard(subscriber)

    def _look_after_idle(self, now: float) -> None:
        for job_id, channel in self._channels.items():
            if channel.final is not None or channel.checking:
                continue
            idle = now - channel.last_activity
            if channel.ended is not None:
                if idle >= self.grace_seconds:
                    self._deliver(channel, Delivery(None, "done", format_event("done", channel.ended)))
            elif idle >= self.idle_check_seconds:
                channel.checking = True
                task = asyncio.create_task(self._check(job_id, channel))
                self._checks.add(task)
                task.add_done_callback(self._checks.discard)

    async def _check(self, job_id: str, channel: _Channel) -> None:
        try:
            channel.ended = await self.check_ended(job_id)
        except Exception as exc:
            # The database is busy or down: the next idle period asks again.
            error = f"{type(exc).__name__}: {exc}"
            log.warning("event hub cannot check a job's state", job_id=job_id, error=error)
        finally:
            channel.checking = False
            channel.last_activity = time.monotonic()
