"""The Celery application: broker settings that keep long jobs safe, and the queue layout."""

from __future__ import annotations

from celery import Celery

from framefleet.config import Settings, get_settings
from framefleet.queues import ALL_QUEUES

RUN_JOB_TASK = "framefleet.run_job"


def make_celery(settings: Settings) -> Celery:
    app = Celery("framefleet", broker=settings.redis_url, include=["framefleet.worker.tasks"])
    app.conf.update(
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
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # Longer than the longest allowed job, so Redis never redelivers a job still running.
            "visibility_timeout": settings.visibility_timeout,
            # Drain queues in the order the worker lists them (live first), not round-robin.
            "queue_order_strategy": "priority",
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=False,
    )
    return app


app = make_celery(get_settings())
