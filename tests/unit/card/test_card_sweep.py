"""The background sweep: keeps going after a failure, drains full batches at once, stops on cancel."""
import asyncio

from services.card.handlers import CardHandlers
from services.card.store import SweepCounts
from services.common.clock import FakeClock


class FakeSweepStore:
    def __init__(self, script):
        self.script = list(script)
        self.calls = []
        self.done = asyncio.Event()

    async def sweep(self, now_ms, limit=500):
        self.calls.append((now_ms, limit))
        step = self.script.pop(0) if self.script else SweepCounts()
        if not self.script:
            self.done.set()
        if isinstance(step, Exception):
            raise step
        return step


async def test_the_sweep_survives_a_failure_and_drains_full_batches_without_waiting():
    store = FakeSweepStore([RuntimeError("disk hiccup"), SweepCounts(released=10), SweepCounts(released=3)])
    clock = FakeClock()
    handlers = CardHandlers(store, clock)
    task = asyncio.create_task(handlers.sweep_forever(0.001, batch=10))
    await asyncio.wait_for(store.done.wait(), 2)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert len(store.calls) >= 3
    assert all(limit == 10 for _, limit in store.calls)
    assert store.calls[0][0] == int(clock.now().timestamp() * 1000)


async def test_full_batches_of_old_request_ids_are_drained_in_one_pass():
    store = FakeSweepStore([SweepCounts(forgotten=10), SweepCounts(forgotten=10), SweepCounts(forgotten=4)])
    task = asyncio.create_task(CardHandlers(store, FakeClock()).sweep_forever(3600, batch=10))
    try:
        # Within the first pass, not an hour later.
        await asyncio.wait_for(store.done.wait(), 2)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    assert len(store.calls) == 3


async def test_a_backlog_is_swept_a_bounded_number_of_batches_per_pass():
    from services.card.handlers import SWEEP_BATCHES_PER_PASS

    store = FakeSweepStore([SweepCounts(forgotten=10)] * (SWEEP_BATCHES_PER_PASS + 5))
    task = asyncio.create_task(CardHandlers(store, FakeClock()).sweep_forever(3600, batch=10))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert len(store.calls) == SWEEP_BATCHES_PER_PASS  # the rest waits for the next pass
