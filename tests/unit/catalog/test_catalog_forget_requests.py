"""The catalog's pass over old request ids: a week on the injected clock, in bounded batches."""
import asyncio

from services.catalog.handlers import FORGET_BATCHES_PER_PASS, Catalog
from services.catalog.model import REQUEST_MEMORY_MS
from services.common.clock import FakeClock, now_ms


class ForgettingStore:
    def __init__(self, backlog: int):
        self.backlog = backlog
        self.calls: list[tuple[int, int]] = []
        self.fail_next = False

    async def forget_requests(self, before_ms, limit):
        self.calls.append((before_ms, limit))
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk I/O error")
        n = min(limit, self.backlog)
        self.backlog -= n
        return n


async def test_a_pass_forgets_ids_older_than_a_week_of_the_injected_clock():
    clock = FakeClock()
    store = ForgettingStore(backlog=3)
    assert await Catalog(store, clock=clock).forget_old_requests(batch=10) == 3
    assert store.calls == [(now_ms(clock) - REQUEST_MEMORY_MS, 10)]


async def test_a_backlog_is_forgotten_a_bounded_number_of_batches_per_pass():
    store = ForgettingStore(backlog=10 * (FORGET_BATCHES_PER_PASS + 5))
    catalog = Catalog(store, clock=FakeClock())
    assert await catalog.forget_old_requests(batch=10) == 10 * FORGET_BATCHES_PER_PASS
    assert len(store.calls) == FORGET_BATCHES_PER_PASS  # each its own short transaction
    assert await catalog.forget_old_requests(batch=10) == 50  # the rest, next pass


async def test_the_background_pass_survives_a_refused_delete():
    store = ForgettingStore(backlog=5)
    store.fail_next = True
    task = asyncio.create_task(Catalog(store, clock=FakeClock()).forget_requests_forever(0.001, batch=10))
    try:
        for _ in range(200):
            if store.backlog == 0:
                break
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    assert store.backlog == 0 and len(store.calls) >= 2
