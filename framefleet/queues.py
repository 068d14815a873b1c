"""Queue routing: one queue per (hardware class, priority), the hardware class as routing key.

Each priority has its own direct exchange; a queue `<pool>.<priority>` is bound to exchange `<priority>`
with routing key `<pool>`. A worker of pool P consumes P's five queues in strict priority order.
"""

from __future__ import annotations

from kombu import Exchange, Queue

from framefleet.core.spec import PRIORITY_ORDER, Hardware, JobSpec, Priority

POOLS: tuple[str, ...] = ("cpu", "gpu")


def queue_name(pool: str, priority: Priority | str) -> str:
    return f"{pool}.{Priority(priority).value}"


def exchange_for(priority: Priority | str) -> Exchange:
    return Exchange(f"framefleet.{Priority(priority).value}", type="direct", durable=True)


def queue_for(pool: str, priority: Priority | str) -> Queue:
    return Queue(queue_name(pool, priority), exchange_for(priority), routing_key=pool, durable=True)


def queues_for_pool(pool: str) -> list[Queue]:
    """The pool's queues, highest priority first: the order a worker drains them."""
    return [queue_for(pool, priority) for priority in PRIORITY_ORDER]


ALL_QUEUES: tuple[Queue, ...] = tuple(q for pool in POOLS for q in queues_for_pool(pool))


def pool_for(spec: JobSpec) -> str:
    """The hardware class a job runs on. `auto` means CPU until GPU capabilities are advertised."""
    return "gpu" if spec.hardware is Hardware.gpu else "cpu"
