"""`Admission` (composer/serving/admission.py): the bounded in-flight count, deadlines, and
the places that streams hold and give back (at their end, on an error, or when dropped
before their first item). Work "past the deadline" never ends by itself (it waits on an
event nobody sets), so whether a deadline passes never depends on the machine's speed."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from composer.serving.admission import Admission
from composer.serving.errors import ApiError, Unavailable


async def forever():
    await asyncio.Event().wait()


async def items(n: int, fail_at: int | None = None, stall_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError("boom")
        if i == stall_at:
            await forever()
        yield i


def test_a_full_house_refuses_at_once_with_429_then_admits_again():
    async def run():
        a = Admission(limit=2, timeout_s=60)
        async with a.slot(), a.slot():
            with pytest.raises(ApiError) as info:
                async with a.slot():
                    pass
            assert info.value.status == 429 and info.value.headers == {"Retry-After": "1"} and a.active == 2
        assert a.active == 0 and a.rejected == 1
        async with a.slot():
            assert a.active == 1

    asyncio.run(run())


def test_work_past_the_deadline_is_cancelled_and_503():
    async def run():
        a = Admission(limit=1, timeout_s=0.05)
        cancelled = asyncio.Event()

        async def slow():
            try:
                await forever()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        async with a.slot():
            with pytest.raises(Unavailable, match="COMPOSER_REQUEST_TIMEOUT_S"):
                await a.run(slow(), a.deadline())
        assert cancelled.is_set() and a.active == 0
        assert await a.run(asyncio.sleep(0, result=7), time.monotonic() + 60) == 7

    asyncio.run(run())


@pytest.mark.parametrize("how", ["consumed", "error", "dropped-unstarted", "dropped-midway", "too-slow"])
def test_a_stream_holds_its_place_until_it_is_over(how):
    async def run():
        a = Admission(limit=1, timeout_s=0.05 if how == "too-slow" else 60)
        async with a.slot() as place:
            stream = a.hand_over(
                place,
                items(3, fail_at=1 if how == "error" else None, stall_at=0 if how == "too-slow" else None),
                a.deadline(),
            )
        assert a.active == 1  # the handler is done; the stream keeps the place
        if how == "consumed":
            assert [x async for x in stream] == [0, 1, 2]
        elif how == "error":
            with pytest.raises(ValueError, match="boom"):
                _ = [x async for x in stream]
        elif how == "too-slow":
            with pytest.raises(Unavailable):
                await stream.prime()
        elif how == "dropped-midway":
            assert await stream.__anext__() == 0
            del stream
        else:
            del stream
        gc.collect()
        assert a.active == 0

    asyncio.run(run())


def test_prime_surfaces_the_first_error_and_keeps_the_first_item():
    async def run():
        a = Admission(limit=1, timeout_s=60)
        async with a.slot() as place:
            stream = await a.hand_over(place, items(2), a.deadline()).prime()
        assert [x async for x in stream] == [0, 1] and a.active == 0
        async with a.slot() as place:
            with pytest.raises(ValueError):
                await a.hand_over(place, items(2, fail_at=0), a.deadline()).prime()
        assert a.active == 0

    asyncio.run(run())
