"""The node's side of cordon and drain (scheduling/control.py): a step of the Celery consumer that reads the
node's hold every `worker_control_poll_seconds` and stops or resumes consuming the pool's queues.

It runs in the worker's main process, which owns the consumer: pool processes finish the jobs they run, and
no new message is fetched while the node is held. A message fetched just before the hold was seen is
passed on by the claim (worker/tasks.py). Polling the database (a primary-key read a second per node) needs
no broadcast to reach the node and holds across restarts: a node that starts held never consumes.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from framefleet.config import get_settings
from framefleet.db.session import session_scope
from framefleet.logging import get_logger
from framefleet.queues import queues_for_pool
from framefleet.scheduling import control

log = get_logger("framefleet.worker.control")


class NodeHold(bootsteps.StartStopStep):
    """Consume the pool's queues only while no operator holds this node."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.held: bool | None = None  # what was last applied; None before the first read
        self.timer: Any = None

    def start(self, parent: Any) -> None:
        self.apply(parent)
        interval = get_settings().worker_control_poll_seconds
        self.timer = parent.timer.call_repeatedly(interval, self.apply, (parent,), priority=10)

    def stop(self, parent: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def apply(self, consumer: Any) -> None:
        """Read the node's hold; cancel or add the pool's queues when it changed."""
        settings = get_settings()
        try:
            with session_scope(settings.database_url) as session:
                held = control.hold_of(session, node=consumer.hostname) is not None
        except Exception as exc:  # the database is away: keep doing what we did
            log.warning("worker hold not read", error=f"{type(exc).__name__}: {exc}")
            return
        if held == self.held or (self.held is None and not held):
            self.held = held
            return
        # Highest priority first, so that the strict queue order is the same after a resume.
        names = [queue.name for queue in queues_for_pool(settings.pool)]
        for name in names:
            if held:
                consumer.cancel_task_queue(name)
            else:
                consumer.add_task_queue(name)
        log.info("worker hold applied", node=consumer.hostname, held=held, queues=names)
        self.held = held
