"""The scheduler's tick: one due day whose handling fails does not cost the other campaigns
their draw, nor the tick its clean-up of old request ids."""
from __future__ import annotations

import logging
from datetime import datetime, time, timezone

from services.common.clock import FakeClock
from services.lottery import model
from services.lottery.handlers import DrawScheduler, Lottery
from services.lottery.model import Campaign, DrawSettings
from services.lottery.store import SqliteLotteryStore

DAY = "2026-01-28"
BROKEN, HEALTHY = "a-broken", "b-healthy"
# The broken campaign's day closes an hour earlier (20:00 in Tokyo), so it falls due first.
ZONES = {BROKEN: "Asia/Tokyo", HEALTHY: "Asia/Shanghai"}


class TwoCampaigns:
    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        return Campaign(campaign_id, ZONES[campaign_id], 3, 0, 2**62)

    async def invited_count(self, campaign_id: str, user_id: str, before_ms: int, *, timeout: float) -> int:
        return 3

    async def close(self) -> None:
        pass


class StoreFailingOneDraw(SqliteLotteryStore):
    """Drawing BROKEN's day hits what no rule foresaw (here: a corrupt database page)."""

    forgotten_before: int | None = None

    async def run_draw(self, campaign_id, day, now_ms, beacon_value, request=None, **judged):
        if campaign_id == BROKEN:
            raise RuntimeError("database disk image is malformed")
        return await super().run_draw(campaign_id, day, now_ms, beacon_value, request, **judged)

    async def forget_requests(self, before_ms: int, limit: int) -> int:
        self.forgotten_before = before_ms
        return await super().forget_requests(before_ms, limit)


async def test_a_draw_that_fails_does_not_keep_the_other_campaigns_day_from_being_drawn(tmp_path, caplog):
    store = await StoreFailingOneDraw.open(tmp_path / "lottery.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))  # 10:00 Shanghai
        lottery = Lottery(store, TwoCampaigns(), clock, DrawSettings(cutoff=time(20, 0), campaigns=(BROKEN, HEALTHY)))
        scheduler = DrawScheduler(lottery)
        for campaign_id in (BROKEN, HEALTHY):
            await lottery.enter_draw("", campaign_id, "u1", DAY, timeout=1)
        clock.advance(hours=11)  # past both cut-offs

        with caplog.at_level(logging.ERROR, logger="miandan.lottery"):
            done = await scheduler.tick()

        assert done["drawn"] == [f"{HEALTHY}/{DAY}"]
        assert (await store.get_draw(HEALTHY, DAY)).drawn
        assert not (await store.get_draw(BROKEN, DAY)).drawn  # left for the next tick to retry
        assert store.forgotten_before == lottery.now_ms() - model.REQUEST_MEMORY_MS
        failed = [r for r in caplog.records if r.exc_info]
        assert [(r.campaign_id, r.day) for r in failed] == [(BROKEN, DAY)]
    finally:
        await store.close()


class OneCampaignBroken(TwoCampaigns):
    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        if campaign_id == BROKEN:
            raise RuntimeError("a bug in the card client")
        return await super().get_campaign(campaign_id, timeout=timeout)


async def test_a_campaign_that_fails_does_not_keep_the_others_day_from_being_committed(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
        lottery = Lottery(store, OneCampaignBroken(), clock, DrawSettings(cutoff=time(20, 0), campaigns=(BROKEN, HEALTHY)))
        assert (await DrawScheduler(lottery).tick())["committed"] == [f"{HEALTHY}/{DAY}"]
        assert await store.get_draw(BROKEN, DAY) is None
    finally:
        await store.close()


async def test_a_day_that_keeps_failing_is_one_line_per_quiet_spell_not_one_per_tick(tmp_path, caplog):
    store = await StoreFailingOneDraw.open(tmp_path / "lottery.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
        lottery = Lottery(store, TwoCampaigns(), clock, DrawSettings(cutoff=time(20, 0), campaigns=(BROKEN, HEALTHY)))
        scheduler = DrawScheduler(lottery)
        await lottery.enter_draw("", BROKEN, "u1", DAY, timeout=1)
        clock.advance(hours=11)
        with caplog.at_level(logging.WARNING, logger="miandan.lottery"):
            for _ in range(int(DrawScheduler.QUIET_S // 5) + 2):  # a tick every 5 s, past one quiet spell
                await scheduler.tick()
                clock.advance(seconds=5)
        failed = [r for r in caplog.records if r.getMessage() == "scheduler: draw failed"]
        assert [r.untold for r in failed] == [0, int(DrawScheduler.QUIET_S // 5) - 1]
        assert all(r.exc_info for r in failed) and all(r.day == DAY for r in failed)
    finally:
        await store.close()


async def test_a_day_failing_again_after_it_recovered_is_news_at_once(tmp_path, caplog):
    store = await StoreFailingOneDraw.open(tmp_path / "lottery.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
        lottery = Lottery(store, OneCampaignBroken(), clock, DrawSettings(cutoff=time(20, 0), campaigns=(BROKEN, HEALTHY)))
        scheduler = DrawScheduler(lottery)
        with caplog.at_level(logging.ERROR, logger="miandan.lottery"):
            await scheduler.tick()
            await scheduler.tick()  # still failing: counted, not said
            lottery.cards = TwoCampaigns()
            await scheduler.tick()  # recovered
            lottery.cards = OneCampaignBroken()
            await scheduler.tick()  # failing again: said at once
        assert [r.getMessage() for r in caplog.records].count("scheduler: day not committed") == 2
    finally:
        await store.close()
