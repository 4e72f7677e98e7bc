"""The sweep forgets a user's wrong-invite-code count once its window is over: the row counted for
nothing from then on, and one was kept for good for every user who ever typed a wrong code."""
import asyncio

import pytest

from services.card import invite_code as codes
from services.card import model as m
from services.card.handlers import CardHandlers
from services.card.store import SqliteCardStore, SweepCounts
from services.common.clock import FakeClock, now_ms
from services.common.errors import DomainError

C = "spring"
POLICY = m.AttemptPolicy(max_failures=3, window_ms=10 * 60 * 1000)


@pytest.fixture
async def world(tmp_path):
    clock = FakeClock()
    store = await SqliteCardStore.open(tmp_path / "card.db", clock=clock, attempts=POLICY)
    start = now_ms(clock) - 1000
    c = m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9), start, b"k" * 32)
    await store.create_campaign(c, "")
    yield store, c, clock
    await store.close()


async def wrong_code(store, c, clock, n: int) -> str:
    with pytest.raises(DomainError) as err:
        await store.accept_invite(c, "bob", [codes.code_for(b"old campaign", str(n))], "", now_ms(clock))
    return err.value.reason


async def attempt_rows(store) -> int:
    return await store.db.read(lambda conn: conn.execute("SELECT COUNT(*) FROM invite_attempts").fetchone()[0])


async def test_a_wrong_code_count_is_kept_for_its_window_and_then_forgotten(world):
    store, c, clock = world
    assert await wrong_code(store, c, clock, 0) == m.INVITE_CODE_NOT_FOUND
    assert await attempt_rows(store) == 1
    window_end = now_ms(clock) + POLICY.window_ms
    assert (await store.sweep(window_end - 1)).attempts_forgotten == 0
    assert await attempt_rows(store) == 1
    assert (await store.sweep(window_end)).attempts_forgotten == 1
    assert await attempt_rows(store) == 0


async def test_the_sweep_lifts_no_block_before_its_window_is_over(world):
    store, c, clock = world
    for n in range(POLICY.max_failures):
        assert await wrong_code(store, c, clock, n) == m.INVITE_CODE_NOT_FOUND
    clock.advance(POLICY.window_ms / 1000 - 1)
    await store.sweep(now_ms(clock))
    assert await wrong_code(store, c, clock, 99) == m.INVITE_ATTEMPTS_EXCEEDED
    clock.advance(1)
    await store.sweep(now_ms(clock))
    assert await attempt_rows(store) == 0
    # A new window, as it would have been with the row still there.
    assert await wrong_code(store, c, clock, 100) == m.INVITE_CODE_NOT_FOUND
    assert await store.db.read(lambda conn: [tuple(r) for r in conn.execute("SELECT failures FROM invite_attempts")]) == [(1,)]


class ScriptedSweeps:
    def __init__(self, script):
        self.script = list(script)
        self.calls = 0
        self.done = asyncio.Event()

    async def sweep(self, now_ms, limit=500):
        self.calls += 1
        if len(self.script) == 1:
            self.done.set()
        return self.script.pop(0) if self.script else SweepCounts()


async def test_full_batches_of_ended_windows_are_drained_in_one_pass():
    store = ScriptedSweeps([SweepCounts(attempts_forgotten=10), SweepCounts(attempts_forgotten=10), SweepCounts(attempts_forgotten=4)])
    task = asyncio.create_task(CardHandlers(store, FakeClock()).sweep_forever(3600, batch=10))
    try:
        await asyncio.wait_for(store.done.wait(), 2)  # within the first pass, not an hour later
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    assert store.calls == 3
