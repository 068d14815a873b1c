"""The feed: one Redis Stream of the job events that webhooks report, written where job events are
published and read by the webhook worker, which turns each entry into a durable webhook event.

Writing costs the job path no extra round trip: the entry rides in the same pipeline as the job event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, get_args

import redis

from framefleet.core.spec import WebhookEventType

FEED_KEY = "framefleet:webhooks:feed"
GROUP = "webhooks"
# Bounded like the job streams; a webhook worker down long enough to fall this far behind loses the oldest.
FEED_MAXLEN = 1_000_000

EVENT_TYPES: tuple[str, ...] = get_args(WebhookEventType)
# Sent only to targets that name them: an endpoint made without a list of event types does not get them.
OPT_IN: tuple[str, ...] = ("job.progress",)
DEFAULT_EVENT_TYPES: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t not in OPT_IN)
_STATE_EVENTS = {
    "running": "job.started",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "canceled": "job.canceled",
    "retrying": "job.retrying",
}


def webhook_type(event_type: str, data: dict[str, Any]) -> str | None:
    """The webhook event a job stream event stands for, or None (progress, metrics, `done`, queued...)."""
    if event_type == "state":
        return _STATE_EVENTS.get(str(data.get("state")))
    if event_type == "output":
        return "job.output_ready"
    return None


def milestones_crossed(before: float, now: float, milestones: Sequence[int]) -> list[int]:
    """The progress milestones (percent) passed going from `before` to `now`, lowest first."""
    return [m for m in sorted(set(milestones)) if before < m <= now]


def milestone_source(job_id: str, milestone: int) -> str:
    """The one source a job's milestone event may have: reaching the milestone again (a retry, an attempt
    handed back by a lost or preempted worker) finds the event already recorded and makes no second one."""
    return f"{job_id}:progress:{milestone}"


def add(pipe: Any, job_id: str, webhook_event: str, detail: str = "") -> None:
    """Queue one feed entry on a pipeline (or client): the job and the webhook event type."""
    fields = {"job": job_id, "type": webhook_event, "detail": detail}
    pipe.xadd(FEED_KEY, fields, maxlen=FEED_MAXLEN, approximate=True)


def note_created(client: redis.Redis, job_ids: Iterable[str]) -> None:
    """Feed `job.created` for jobs just committed (one round trip for the group)."""
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        add(pipe, job_id, "job.created")
    pipe.execute()
