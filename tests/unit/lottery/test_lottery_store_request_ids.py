"""CommitDraw / RunDraw request ids in the lottery store (migration 2): a store from before the
table opens with its days intact, a key is checked and remembered in the write that applies the
call, and the scheduler's tick forgets keys older than a week."""
from __future__ import annotations

import sqlite3
from datetime import datetime, time, timezone

import pytest

from services.common.clock import FakeClock, to_ms
from services.common.db import Database
from services.common.errors import DomainError
from services.lottery import model
from services.lottery.handlers import DrawScheduler, Lottery
from services.lottery.model import Campaign, DrawSettings
from services.lottery.seed_seal import SeedSeal
from services.lottery.store import MIGRATIONS, SYNCHRONOUS, SqliteLotteryStore, _insert_draw_if_absent

CAMPAIGN, DAY = "spring-2026", "2026-01-28"
MORNING = datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc)  # 10:00 Shanghai


class Cards:
    async def get_campaign(self, campaign_id, *, timeout):
        return Campaign(campaign_id, "Asia/Shanghai", 3, 0, 2**62)

    async def invited_count(self, campaign_id, user_id, before_ms, *, timeout):
        return 0


def a_draw(now_ms: int, day: str = DAY, winner_count: int = 15) -> model.DrawRecord:
    seed = bytes(range(32))
    return model.DrawRecord(
        campaign_id=CAMPAIGN, day=day, prize_name="p", prize_value_fen=1, winner_count=winner_count,
        time_zone="Asia/Shanghai", seed=seed, commitment=model.commitment_of(seed), commit_ms=now_ms,
        cutoff_ms=now_ms + 1_000,
    )


async def reason(coro) -> str:
    with pytest.raises(DomainError) as err:
        await coro
    return err.value.reason


async def test_a_store_from_before_request_ids_opens_and_remembers_them(tmp_path):
    path, seal, now = tmp_path / "lottery.db", SeedSeal(b"k" * 32), to_ms(MORNING)
    old = await Database.open(path, MIGRATIONS[:1], synchronous=SYNCHRONOUS)
    try:
        await old.write(_insert_draw_if_absent, seal, a_draw(now))
    finally:
        await old.close()

    store = await SqliteLotteryStore.open(path, seal=seal)
    try:
        assert (await store.get_draw(CAMPAIGN, DAY)).winner_count == 15
        key = model.request_key(model.COMMIT_DRAW, "x", now, CAMPAIGN, DAY, "", 0, 3, "", "")
        assert await store.replayed(key) is None
        amended = await store.commit_draw(a_draw(now, winner_count=3), {"winner_count"}, now, key)
        assert amended.winner_count == 3
        assert (await store.replayed(key)).winner_count == 3
        other = model.request_key(model.COMMIT_DRAW, "x", now, CAMPAIGN, DAY, "", 0, 4, "", "")
        assert await reason(store.replayed(other)) == "REQUEST_ID_REUSED"
        assert await reason(store.commit_draw(a_draw(now, winner_count=4), {"winner_count"}, now, other)) == "REQUEST_ID_REUSED"
        # One id per method: the same "x" may name a RunDraw.
        run = model.request_key(model.RUN_DRAW, "x", now, CAMPAIGN, DAY, "")
        drawn = await store.run_draw(CAMPAIGN, DAY, now + 1_000, "", run)
        assert drawn.drawn and (await store.replayed(run)) == drawn
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert sorted(db.execute("SELECT method, request_id, campaign_id, day FROM requests")) == [
            (model.COMMIT_DRAW, "x", CAMPAIGN, DAY), (model.RUN_DRAW, "x", CAMPAIGN, DAY),
        ]


async def test_the_tick_forgets_request_ids_after_a_week(tmp_path):
    clock = FakeClock(MORNING)
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db", clock=clock, seal=SeedSeal(b"k" * 32))
    try:
        lottery = Lottery(store, Cards(), clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)))
        await lottery.commit_draw("x", CAMPAIGN, DAY, winner_count=3, timeout=5)
        assert await reason(lottery.commit_draw("x", CAMPAIGN, "2026-01-29", winner_count=3, timeout=5)) == "REQUEST_ID_REUSED"
        scheduler = DrawScheduler(lottery)
        clock.advance(model.REQUEST_MEMORY_MS / 1000 - 60)
        await scheduler.tick()
        assert await reason(lottery.commit_draw("x", CAMPAIGN, "2026-01-29", winner_count=3, timeout=5)) == "REQUEST_ID_REUSED"
        clock.advance(120)
        await scheduler.tick()
        # Forgotten: "x" is a new request now.
        later = await lottery.commit_draw("x", CAMPAIGN, "2026-02-10", winner_count=3, timeout=5)
        assert later.day == "2026-02-10"
    finally:
        await store.close()
