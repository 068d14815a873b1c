"""The event hub against a real Redis: one reader, many subscribers, a slow one cut off without holding up the
others, and a cut-off client resuming from its last id with nothing lost or repeated."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis

from framefleet.api.hub import ZERO, EventHub
from framefleet.api.sse import live_stream
from framefleet.events import publish
from tests import services

EVENTS = 400
BUFFER = 150


async def _never_ended(_job_id: str) -> dict[str, Any] | None:
    return None


def _hub(url: str) -> EventHub:
    return EventHub(url, check_ended=_never_ended, idle_check_seconds=60, grace_seconds=1, buffer=BUFFER)


async def _publish_slowly(url: str, job_id: str) -> None:
    # In a thread, a little at a time: a client that keeps up drains between the hub's reads.
    def run() -> None:
        client = redis.Redis.from_url(url)
        for index in range(EVENTS):
            publish(client, job_id, "progress", {"percent": index})
            if index % 50 == 49:
                time.sleep(0.02)
        publish(client, job_id, "done", {"state": "succeeded"})
        client.close()

    await asyncio.to_thread(run)


def test_a_slow_subscriber_is_cut_off_and_the_others_get_everything_in_order(
    redis_server: services.RedisServer,
) -> None:
    job_id = str(uuid.uuid4())

    async def scenario() -> None:
        hub = _hub(redis_server.url)
        slow = hub.subscribe(job_id, ZERO)  # never reads
        fast = hub.subscribe(job_id, ZERO)
        received: list[tuple[int, int]] = []

        async def drain() -> None:
            while True:
                delivery = await fast.queue.get()
                assert delivery.id is not None
                received.append(delivery.id)
                if delivery.type == "done":
                    return

        reader = asyncio.create_task(drain())
        await _publish_slowly(redis_server.url, job_id)
        await asyncio.wait_for(reader, 20)
        assert slow.overflowed and not fast.overflowed
        assert len(received) == EVENTS + 1
        assert received == sorted(set(received)), "in order, without repeats"
        assert hub.subscribers == 1  # the slow one is out of the channel
        hub.unsubscribe(fast)
        await hub.close()

    asyncio.run(scenario())


def test_a_cut_off_stream_ends_and_its_client_resumes_without_gaps(
    redis_server: services.RedisServer,
) -> None:
    job_id = str(uuid.uuid4())

    async def scenario() -> None:
        hub = _hub(redis_server.url)
        stream = live_stream(hub=hub, job_id=job_id, after=None, keepalive_seconds=5)
        # The client asks for its first event, then reads nothing while every event is published: its
        # queue overflows.
        pending = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.2)  # subscribed (the generator runs up to its first wait)
        await _publish_slowly(redis_server.url, job_id)
        texts = [await pending]
        texts += [text async for text in stream]
        ids = [line[4:] for text in texts for line in text.splitlines() if line.startswith("id: ")]
        assert "event: done" not in "".join(texts), "the slow client was cut off before the end"
        assert len(ids) >= 1

        # Resuming from the last id it got brings exactly the rest, ending with `done`.
        rest = [
            text async for text in live_stream(hub=hub, job_id=job_id, after=ids[-1], keepalive_seconds=5)
        ]
        rest_ids = [line[4:] for text in rest for line in text.splitlines() if line.startswith("id: ")]
        assert len(ids) + len(rest_ids) == EVENTS + 1
        assert len(set(ids + rest_ids)) == EVENTS + 1
        assert rest[-1].startswith("id: ") and "event: done" in rest[-1]
        await hub.close()

    asyncio.run(scenario())
