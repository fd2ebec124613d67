"""Backpressure and deadlines for the requests that do model work.

Contract: `Admission(limit, timeout_s)` admits at most `limit` requests at a time (per
process: one ingress replica); one more is refused at once with 429 and `Retry-After`, so
the queue in front of the models is bounded and a burst is shed instead of piling up.
`async with admission.slot() as place:` holds a place for a handler; `await
admission.run(coro, deadline)` awaits backend work until the request's deadline
(`admission.deadline()`), then cancels it and answers 503 (`Unavailable`).
`admission.hand_over(place, agen, deadline)` moves the place to a response stream, which
keeps it until the stream ends, fails or is dropped (a client gone before the first byte
included), each item due before the deadline; `await stream.prime()` waits for the first
item, so an error before any output is still an HTTP error. Everything runs on one event
loop: no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from composer.serving.errors import ApiError, Unavailable


class Place:
    """One admitted request's place; released exactly once."""

    def __init__(self, admission: Admission):
        self.admission, self.held, self.handed_over = admission, True, False

    def release(self) -> None:
        if self.held:
            self.held = False
            self.admission.active -= 1


class Admission:
    def __init__(self, limit: int, timeout_s: float):
        self.limit, self.timeout_s, self.active, self.rejected = limit, timeout_s, 0, 0

    def deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    @asynccontextmanager
    async def slot(self):
        if self.active >= self.limit:
            self.rejected += 1
            raise ApiError(
                429,
                "overloaded",
                f"the server has {self.active} requests in flight, its limit "
                "(COMPOSER_MAX_QUEUE); retry shortly",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        place = Place(self)
        try:
            yield place
        finally:
            if not place.handed_over:  # a stream holds it now and releases it when done
                place.release()

    async def run(self, work: Awaitable, deadline: float):
        try:
            return await asyncio.wait_for(work, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise Unavailable(
                f"the request did not finish within {self.timeout_s:g}s "
                "(COMPOSER_REQUEST_TIMEOUT_S); retry later"
            ) from None

    def hand_over(self, place: Place, items: AsyncIterator, deadline: float) -> AsyncIterator:
        place.handed_over = True
        return _Stream(self, place, aiter(items), deadline)


class _Stream:
    """`items` under the request's deadline, releasing its place when it ends or is dropped."""

    def __init__(self, admission: Admission, place: Place, items: AsyncIterator, deadline: float):
        self.admission, self.place, self.items, self.deadline = admission, place, items, deadline
        self.first: list = []

    async def prime(self) -> _Stream:
        """Wait for the first item, so that an error before any output is an HTTP error."""
        try:
            self.first.append(await self.__anext__())
        except StopAsyncIteration:
            pass
        return self

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.first:
            return self.first.pop()
        try:
            return await self.admission.run(anext(self.items), self.deadline)
        except BaseException:  # StopAsyncIteration included: the stream is over either way
            self.place.release()
            raise

    def __del__(self):
        self.place.release()
