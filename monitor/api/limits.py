"""How many `/api/*` queries run at once (`http.max_concurrent_queries`).

The queries are CPU work in the process that also runs the scheduler: eight 13 MB history requests in
parallel once kept both cores busy for 14 s and rule evaluations were skipped. Each query runs in a worker
thread (never one of the scheduler's), and at most `slots` of them at a time; the others wait on the event
loop, holding no thread, for up to `wait` seconds, then get 503 with `Retry-After`. The probes and the
dashboard page are not queries and never wait here.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
from fastapi import HTTPException, status


class QueryGate:
    """A capacity limit on concurrent API queries, with a bounded wait for a free slot."""

    def __init__(self, slots: int, wait: timedelta) -> None:
        self.slots = slots
        self.wait = wait.total_seconds()
        self._limiter = anyio.CapacityLimiter(slots)

    @property
    def running(self) -> int:
        return self._limiter.borrowed_tokens

    async def slot(self) -> AsyncIterator[None]:
        """A FastAPI dependency: the request's endpoint runs while it holds one of the slots."""
        borrower = object()  # released by the same token, whichever task closes the dependency
        acquired = False
        with anyio.move_on_after(self.wait):
            await self._limiter.acquire_on_behalf_of(borrower)
            acquired = True
        if not acquired:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"busy: {self.slots} API queries are already running and no slot freed up within "
                f"{self.wait:g} s (http.max_concurrent_queries); retry later",
                headers={"Retry-After": str(max(1, math.ceil(self.wait / 10)))},
            )
        try:
            yield
        finally:
            self._limiter.release_on_behalf_of(borrower)
