"""Overload protection for one API process: a bound on requests in flight, and on open event streams.

Beyond a bound the API answers at once, 503 `unavailable` (or 429 `rate-limited` for one tenant's streams)
with Retry-After, instead of queueing work that would time out later as a 500 or outlive its client.
Everything here runs on the event loop and needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framefleet.api.errors import Problem, busy, problem_response


class Slots:
    """A counting limit with a bounded, first-come waiting line and a wait budget.

    Unlike asyncio.Semaphore it binds to no event loop, so one app can serve several loops in turn (tests).
    """

    def __init__(self, limit: int, max_waiting: int) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self, wait_seconds: float) -> bool:
        """Take a slot, waiting at most `wait_seconds`; False when none came free in time."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        # A bounded line: beyond it a request could not be served within the budget anyway.
        if wait_seconds <= 0 or len(self._waiters) >= self.max_waiting:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait_seconds):
                await waiter
        except TimeoutError:
            pass
        except BaseException:
            self._forget(waiter)
            raise
        if waiter.done() and not waiter.cancelled():
            return True  # release() handed this waiter its slot, possibly just as the budget ran out
        self._forget(waiter)
        return False

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self.release()  # a slot was handed over to a waiter that is going away: pass it on
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back, straight to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.used -= 1


class AdmissionLimiter:
    """Plain ASGI middleware: at most `max_in_flight` requests of this process are being worked on.

    A request holds its slot until its answer starts, so an event stream counts while it is being set up
    and then only against the stream limits. `exempt` paths (liveness) never wait.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_waiting: int,
        wait_seconds: float,
        retry_after: int,
        exempt: Iterable[str] = ("/healthz",),
    ) -> None:
        self.app = app
        self.slots = Slots(max_in_flight, max_waiting)
        self.wait_seconds = wait_seconds
        self.retry_after = retry_after
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if not await self.slots.take(self.wait_seconds):
            refusal = busy("the API is at capacity; try again shortly", self.retry_after)
            await problem_response(refusal, scope["path"])(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.slots.release()

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            release()


class StreamLimits:
    """Open event streams of this process, in all and per tenant."""

    def __init__(self, *, per_process: int, per_tenant: int, retry_after: int) -> None:
        self.per_process = per_process
        self.per_tenant = per_tenant
        self.retry_after = retry_after
        self.open = 0
        self._by_tenant: dict[int, int] = {}

    def acquire(self, tenant_id: int) -> None:
        """Count a new stream for `tenant_id`, or raise the 503/429 that refuses it."""
        headers = {"Retry-After": str(self.retry_after)}
        if self.open >= self.per_process:
            raise Problem(
                "unavailable",
                f"this API process serves its limit of {self.per_process} event streams",
                headers=headers,
            )
        if self._by_tenant.get(tenant_id, 0) >= self.per_tenant:
            raise Problem(
                "rate-limited",
                f"this tenant has its limit of {self.per_tenant} open event streams here",
                headers=headers,
            )
        self.open += 1
        self._by_tenant[tenant_id] = self._by_tenant.get(tenant_id, 0) + 1

    def release(self, tenant_id: int) -> None:
        """A stream of `tenant_id` ended."""
        self.open -= 1
        left = self._by_tenant[tenant_id] - 1
        if left:
            self._by_tenant[tenant_id] = left
        else:
            del self._by_tenant[tenant_id]
