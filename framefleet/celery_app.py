"""The Celery application: broker settings that keep long jobs safe, and the queue layout."""

from __future__ import annotations

from celery import Celery
from celery.signals import beat_init

from framefleet.config import Settings, get_settings
from framefleet.queues import ALL_QUEUES
from framefleet.redis_url import celery_broker, parse_redis_url

RUN_JOB_TASK = "framefleet.run_job"
# One chunk (or the join) of a split-and-stitch attempt: args job id, attempt, index (worker/chunked.py).
RUN_CHUNK_TASK = "framefleet.run_chunk"


def make_celery(settings: Settings) -> Celery:
    # A Sentinel URL becomes kombu's sentinel:// transport with the master's name in its options.
    broker_url, sentinel_options = celery_broker(parse_redis_url(settings.redis_url))
    app = Celery(
        "framefleet", broker=broker_url, include=["framefleet.worker.tasks", "framefleet.worker.chunked"]
    )
    app.conf.update(
        # The URL as configured, for the redis-py clients of code that holds only the app.
        framefleet_redis_url=settings.redis_url,
        task_queues=ALL_QUEUES,
        task_default_queue="cpu.normal",
        task_default_exchange="framefleet.normal",
        task_default_routing_key="cpu",
        task_create_missing_queues=False,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # A job is acknowledged only when it ends, and handed back if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        # Replaced pool processes bound slow leaks; 0 in the settings means never.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child or None,
        # A Redis blip must not kill running encodes: ownership is the database's compare-and-set, so a
        # redelivered message cannot start a second run, and the reconciler restores lost messages.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Longer than the longest allowed job, so Redis never redelivers a job still running.
            "visibility_timeout": settings.visibility_timeout,
            # Drain queues in the order the worker lists them (live first), not round-robin.
            "queue_order_strategy": "priority",
            **sentinel_options,
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=False,
    )
    return app


app = make_celery(get_settings())
_others: dict[str, Celery] = {}


def celery_for(settings: Settings) -> Celery:
    """The process-wide app when it uses this broker, else one bound to these settings (kept per URL).

    The process-wide app reads the settings once, when first imported; code that runs with other settings
    (tests, a tool pointed at another deployment) must still publish to its own broker.
    """
    if app.conf.framefleet_redis_url == settings.redis_url:
        return app
    if settings.redis_url not in _others:
        _others[settings.redis_url] = make_celery(settings)
    return _others[settings.redis_url]


@beat_init.connect
def _start_maintenance(sender: object = None, **_: object) -> None:
    # The beat process also runs FrameFleet's maintenance loop (reaper, reconciler, retry promotion,
    # aging) in a thread of its own rather than as Celery tasks: those would wait in the same queues as
    # the encodes and never run when every worker is busy or dead, which is exactly when they are needed.
    from framefleet.observability.metrics import serve_beat_metrics
    from framefleet.scheduling.maintenance import start_in_background

    settings = get_settings()
    if settings.beat_metrics_port:
        serve_beat_metrics(settings.beat_metrics_port, settings.metrics_host)
    start_in_background(settings)
