"""TimedCache: one fetch shared by every caller that misses at once, kept for its TTL."""
import asyncio

import pytest

from gateway.compose import TimedCache
from services.common.clock import FakeClock


async def test_callers_that_miss_at_once_share_one_fetch():
    cache: TimedCache[str, int] = TimedCache(10, FakeClock())
    fetches = 0

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.01)
        return 7

    assert await asyncio.gather(*(cache.get("k", fetch) for _ in range(20))) == [7] * 20
    assert fetches == 1 and await cache.get("k", fetch) == 7 and fetches == 1


async def test_a_fetch_cancelled_before_its_first_step_is_not_left_behind():
    cache: TimedCache[str, int] = TimedCache(10, FakeClock())

    async def fetch() -> int:
        return 7

    waiter = asyncio.ensure_future(cache.get("k", fetch))
    await asyncio.sleep(0)  # the waiter made the fetch task, which has not run yet
    cache._inflight["k"][0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The next caller fetches anew instead of awaiting the cancelled fetch forever after.
    assert await asyncio.wait_for(cache.get("k", fetch), 1) == 7


async def test_a_caller_arriving_as_the_last_waiter_leaves_gets_a_fetch_of_its_own():
    # The last waiter's client goes away, which cancels the shared fetch; a caller that asks in
    # the same loop turn, before the fetch has seen its cancellation, must not join it: it would
    # be answered CancelledError although nobody cancelled its call.
    cache: TimedCache[str, int] = TimedCache(10, FakeClock())
    fetches = 0

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        await asyncio.sleep(0.01)
        return 7

    leaving = asyncio.ensure_future(cache.get("k", fetch))
    await asyncio.sleep(0)  # it waits on the shared fetch
    leaving.cancel()
    arriving = asyncio.ensure_future(cache.get("k", fetch))  # runs right after `leaving` lets go
    with pytest.raises(asyncio.CancelledError):
        await leaving
    for _ in range(3):
        await asyncio.sleep(0)  # the cancelled fetch ends while the new one is still out
    # ... and does not forget the new one: a caller now shares it.
    later = asyncio.ensure_future(cache.get("k", fetch))
    assert await asyncio.wait_for(asyncio.gather(arriving, later), 1) == [7, 7]
    assert fetches == 2


async def test_a_value_kept_before_the_wall_clock_stepped_back_is_not_kept_longer():
    # The clock is the wall clock: stepped back a minute, a 3 s draw summary used to be served
    # for 63 s. A value fetched "in the future" is stale, whatever its TTL says.
    clock = FakeClock()
    cache: TimedCache[str, int] = TimedCache(3, clock)
    values = iter(range(100))

    async def fetch() -> int:
        return next(values)

    assert await cache.get("k", fetch) == 0
    clock.advance(1)
    assert await cache.get("k", fetch) == 0
    clock.advance(-60)
    assert await cache.get("k", fetch) == 1
    clock.advance(2.9)
    assert await cache.get("k", fetch) == 1
    clock.advance(0.2)
    assert await cache.get("k", fetch) == 2


async def test_a_fetch_that_fails_once_its_last_waiter_left_leaves_no_unretrieved_error():
    # A fetch cancelled by its last waiter may still end with an error of its own (an upstream
    # call turning its cancellation into a failure): nobody reads it, and asyncio logged "Task
    # exception was never retrieved" at ERROR whenever an upstream was merely slow or down.
    import gc
    import time

    from services.common.errors import DomainError

    loop = asyncio.get_running_loop()
    unhandled: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    cache: TimedCache[str, int] = TimedCache(10, FakeClock())

    async def fetch() -> int:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise RuntimeError("the upstream call failed as it was cancelled") from None
        return 7

    with pytest.raises(DomainError):
        await cache.get("k", fetch, until=time.monotonic() + 0.01)
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert [c for c in unhandled if "never retrieved" in c.get("message", "")] == []
