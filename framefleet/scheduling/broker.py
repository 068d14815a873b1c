"""What the broker holds: the job ids waiting in each Redis queue, read without consuming anything.

Celery's Redis transport keeps a queue as a list (`cpu.normal`, plus `cpu.normal\\x06\\x16<n>` for message
priorities) of JSON envelopes whose base64 body is `[args, kwargs, embed]`, our args being `[job_id]`.
Delivered but unacknowledged messages sit in the `unacked` hash, indexed by delivery time in
`unacked_index`.
"""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from framefleet.queues import ALL_QUEUES

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # step 0 is the plain list
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
CHUNK = 1000


@dataclass
class Snapshot:
    # job id -> [(list key, raw message)] for every waiting message of that job
    waiting: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    # job ids whose message was delivered to a worker recently (within the grace given to snapshot())
    delivered: set[str] = field(default_factory=set)
    depth: dict[str, int] = field(default_factory=dict)

    def has(self, job_id: str) -> bool:
        return job_id in self.waiting or job_id in self.delivered


def queue_keys(name: str) -> list[str]:
    """The Redis lists that make up one queue."""
    return [name, *(f"{name}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]


def job_id_of(raw: str | bytes) -> str | None:
    """The job id a raw Celery message carries, or None for anything else."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if isinstance(args, list) and args and isinstance(args[0], str):
        return args[0]
    return None


def _lrange_all(client: redis.Redis, key: str) -> Iterable[str]:
    start = 0
    while True:
        chunk: Any = client.lrange(key, start, start + CHUNK - 1)
        if not chunk:
            return
        yield from chunk
        if len(chunk) < CHUNK:
            return
        start += CHUNK


def snapshot(
    client: redis.Redis, *, delivered_within: float, queue_names: Iterable[str] | None = None
) -> Snapshot:
    """Every job id waiting in the queues, and those delivered within the last `delivered_within` seconds."""
    snap = Snapshot()
    for name in queue_names or [q.name for q in ALL_QUEUES]:
        depth = 0
        for key in queue_keys(name):
            for raw in _lrange_all(client, key):
                depth += 1
                job_id = job_id_of(raw)
                if job_id is not None:
                    snap.waiting[job_id].append((key, raw))
        snap.depth[str(name)] = depth
    since = time.time() - delivered_within
    recent: Any = client.zrangebyscore(UNACKED_INDEX, since, "+inf")
    if recent:
        entries: Any = client.hmget(UNACKED, recent)
        for entry in entries:
            if entry is None:
                continue
            try:
                raw = json.loads(entry)[0]
            except (ValueError, IndexError, TypeError):
                continue
            job_id = job_id_of(json.dumps(raw) if not isinstance(raw, str) else raw)
            if job_id is not None:
                snap.delivered.add(job_id)
    return snap


def depths(client: redis.Redis, queue_names: Iterable[str] | None = None) -> dict[str, int]:
    """Messages waiting in each queue (all its priority lists together)."""
    names = [str(n) for n in (queue_names or [q.name for q in ALL_QUEUES])]
    pipe = client.pipeline(transaction=False)
    for name in names:
        for key in queue_keys(name):
            pipe.llen(key)
    counts = pipe.execute()
    per = len(PRIORITY_STEPS) + 1
    return {name: int(sum(counts[i * per : (i + 1) * per])) for i, name in enumerate(names)}


def remove(client: redis.Redis, key: str, raw: str) -> int:
    """Take one specific waiting message out of a queue (aging moved its job); 0 if a worker took it first."""
    return int(client.lrem(key, 1, raw))  # type: ignore[arg-type]
