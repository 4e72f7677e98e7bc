"""Use cases over a fake card directory (the CardDirectory Protocol) and the SQLite store."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, datetime, time, timezone

import pytest

from services.common.clock import FakeClock, to_ms
from services.common.errors import DomainError, Unavailable
from services.lottery import model
from services.lottery.card_client import campaign_not_found, upstream_unavailable
from services.lottery.handlers import DrawScheduler, Lottery
from services.lottery.model import Campaign, DrawSettings
from services.lottery.store import SqliteLotteryStore

CAMPAIGN = "c1"
DAY = "2026-01-28"


class FakeCards:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.asked: list[tuple[str, int]] = []
        self.down = False
        self.campaign = Campaign(CAMPAIGN, "Asia/Shanghai", 3, 0, 2**62)

    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        if self.down:
            raise upstream_unavailable()
        if campaign_id != CAMPAIGN:
            raise campaign_not_found(campaign_id)
        return self.campaign

    async def invited_count(self, campaign_id: str, user_id: str, before_ms: int, *, timeout: float) -> int:
        if self.down:
            raise upstream_unavailable()
        self.asked.append((user_id, before_ms))
        return self.counts.get(user_id, 0)

    async def close(self) -> None:
        pass


@pytest.fixture
async def env(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    cards = FakeCards()
    clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
    lottery = Lottery(store, cards, clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)))
    try:
        yield lottery, cards, clock
    finally:
        await store.close()


async def test_qualification_is_asked_for_invites_before_the_cutoff(env):
    lottery, cards, clock = env
    cards.counts["u"] = 3
    entry, draw, newly = await lottery.enter_draw("", CAMPAIGN, "u", DAY, timeout=1)
    assert newly and draw.commitment and cards.asked == [("u", draw.cutoff_ms)]
    assert draw.cutoff_ms == to_ms(datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc))


async def test_an_entered_user_is_answered_without_asking_the_card_service_again(env):
    lottery, cards, clock = env
    cards.counts["u"] = 5
    await lottery.enter_draw("", CAMPAIGN, "u", DAY, timeout=1)
    cards.down = False
    cards.counts["u"] = 0  # even if the count dropped, the entry stands
    entry, draw, newly = await lottery.enter_draw("", CAMPAIGN, "u", DAY, timeout=1)
    assert not newly and len(cards.asked) == 1


async def test_a_card_outage_surfaces_as_upstream_unavailable(env):
    lottery, cards, _ = env
    cards.down = True
    with pytest.raises(Unavailable) as err:
        await lottery.enter_draw("", CAMPAIGN, "u", DAY, timeout=1)
    assert err.value.reason == "UPSTREAM_UNAVAILABLE" and err.value.retry_after_ms


async def test_the_configured_cutoff_moves_the_close_of_entries(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "l.db")
    try:
        cards = FakeCards()
        cards.counts["u"] = 3
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))  # 10:00 Shanghai
        lottery = Lottery(store, cards, clock, DrawSettings(cutoff=time(9, 30)))
        with pytest.raises(DomainError) as err:
            await lottery.enter_draw("", CAMPAIGN, "u", DAY, timeout=1)
        assert err.value.reason == "ENTRIES_CLOSED"
    finally:
        await store.close()


async def test_a_configured_beacon_source_is_bound_by_the_scheduler_and_waits_for_its_value(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "l.db")
    try:
        cards = FakeCards()
        clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
        lottery = Lottery(store, cards, clock, DrawSettings(beacon_source="drand:quicknet", campaigns=(CAMPAIGN,)))
        scheduler = DrawScheduler(lottery)
        assert (await scheduler.tick())["committed"] == [f"{CAMPAIGN}/{DAY}"]
        draw = await store.get_draw(CAMPAIGN, DAY)
        assert draw.beacon_source == "drand:quicknet"
        assert draw.beacon_round == model.beacon_round_for("drand:quicknet", draw.cutoff_ms)
        clock.advance(hours=11)
        assert (await scheduler.tick())["waiting_for_beacon"] == [f"{CAMPAIGN}/{DAY}"]
        assert not (await store.get_draw(CAMPAIGN, DAY)).drawn
        drawn = await lottery.run_draw("", CAMPAIGN, DAY, "ab" * 32)
        assert drawn.drawn and drawn.beacon_value == "ab" * 32
    finally:
        await store.close()


async def test_the_scheduler_skips_campaigns_it_cannot_read(env):
    lottery, cards, _ = env
    cards.down = True
    assert await DrawScheduler(lottery).tick() == {"committed": [], "drawn": [], "waiting_for_beacon": []}


class SlowCards(FakeCards):
    """The card service answers GetCampaign only after `clock` moved on by `delay_seconds`."""

    def __init__(self, clock: FakeClock, delay_seconds: float) -> None:
        super().__init__()
        self.clock, self.delay_seconds = clock, delay_seconds

    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        self.clock.advance(seconds=self.delay_seconds)
        return await super().get_campaign(campaign_id, timeout=timeout)


async def test_a_campaign_answered_after_the_cutoff_does_not_commit_the_closed_day(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "l.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 11, 59, 59, tzinfo=timezone.utc))  # 19:59:59 Shanghai
        lottery = Lottery(store, SlowCards(clock, 2), clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)))
        assert (await DrawScheduler(lottery).tick())["committed"] == []
        assert await store.get_draw(CAMPAIGN, DAY) is None
    finally:
        await store.close()


async def test_a_campaign_answered_in_time_commits_the_day_stamped_when_it_was_committed(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "l.db")
    try:
        clock = FakeClock(datetime(2026, 1, 28, 11, 59, 50, tzinfo=timezone.utc))
        lottery = Lottery(store, SlowCards(clock, 2), clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)))
        assert (await DrawScheduler(lottery).tick())["committed"] == [f"{CAMPAIGN}/{DAY}"]
        assert (await store.get_draw(CAMPAIGN, DAY)).commit_ms == to_ms(datetime(2026, 1, 28, 11, 59, 52, tzinfo=timezone.utc))
    finally:
        await store.close()


class BrokenCards(FakeCards):
    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        raise RuntimeError("a bug in the card client")


@pytest.mark.parametrize("cards", [FakeCards, BrokenCards])
async def test_the_background_loop_says_when_its_first_pass_has_ended(env, cards):
    lottery, _, clock = env
    lottery.cards = cards()
    scheduler = DrawScheduler(lottery)
    assert not scheduler.first_pass_done.is_set()
    scheduler.start()
    try:
        await asyncio.wait_for(scheduler.first_pass_done.wait(), 5)
        committed = await lottery.store.get_draw(CAMPAIGN, DAY)
        assert (committed is not None) == (cards is FakeCards)  # the pass ran before the event
    finally:
        await scheduler.stop()


# --- a RunDraw's beacon value is judged for the day as the draw finds it ---------------------

ADMINS_PICK, SIGNED = "ab" * 32, "f0" * 32


class VerifyingBeacon:
    """The drand fetcher with the committed round out and verified: its value is SIGNED."""

    def knows(self, source: str) -> bool:
        return source == "drand:quicknet"

    async def value(self, source: str, round_text: str, now_s: float) -> str | None:
        return SIGNED


class WriteLandingAfterTheLookUp:
    """The store, with `meanwhile` run right after the first look-up of a day: a concurrent
    call, judged earlier, whose write lands between that look-up and the draw."""

    def __init__(self, store, meanwhile) -> None:
        self.store, self.meanwhile = store, meanwhile

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def get_draw(self, campaign_id: str, day: str):
        found = await self.store.get_draw(campaign_id, day)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return found


@pytest.fixture
async def beacon_env(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    cards = FakeCards()
    cards.counts.update({"u1": 3, "u2": 3})
    clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
    lottery = Lottery(store, cards, clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)), VerifyingBeacon())
    try:
        yield lottery, store, clock
    finally:
        await store.close()


class TickingClock(FakeClock):
    """Once ticking, a millisecond passes between any two readings, as on a real clock at the
    turn of a millisecond."""

    ticking = False

    def now(self) -> datetime:
        now = super().now()
        if self.ticking:
            self.advance(seconds=0.001)
        return now


async def test_a_run_asked_as_the_cutoff_passes_never_draws_with_the_admins_beacon_value(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    try:
        cards = FakeCards()
        cards.counts.update({"u1": 3, "u2": 3})
        clock = TickingClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))
        lottery = Lottery(store, cards, clock, DrawSettings(cutoff=time(20, 0), campaigns=(CAMPAIGN,)), VerifyingBeacon())
        committed = await lottery.commit_draw("", CAMPAIGN, DAY, beacon_source="drand:quicknet", timeout=1)
        await lottery.enter_draw("", CAMPAIGN, "u1", DAY, timeout=1)
        await lottery.enter_draw("", CAMPAIGN, "u2", DAY, timeout=1)
        # Asked at each of the last milliseconds before the cut-off, with the clock moving on
        # between any two readings: judged before the cut-off, a run must not draw after it
        # with a value nobody checked; judged after it, the value must be the signed one.
        clock.ticking = True
        for early_ms in range(8, 0, -1):
            clock.set(datetime.fromtimestamp((committed.cutoff_ms - early_ms) / 1000, tz=timezone.utc))
            with pytest.raises(DomainError) as err:
                await lottery.run_draw("", CAMPAIGN, DAY, ADMINS_PICK)
            assert err.value.reason in ("DRAW_NOT_CLOSED", "BEACON_NOT_PUBLISHED", "BEACON_VALUE_MISMATCH"), early_ms
            assert not (await store.get_draw(CAMPAIGN, DAY)).drawn
        # Once the round is out the draw uses its signed value and no other.
        clock.ticking = False
        clock.advance(seconds=10)
        with pytest.raises(DomainError) as err:
            await lottery.run_draw("", CAMPAIGN, DAY, ADMINS_PICK)
        assert err.value.reason == "BEACON_VALUE_MISMATCH"
        assert (await lottery.run_draw("", CAMPAIGN, DAY, "")).beacon_value == SIGNED
    finally:
        await store.close()


async def test_a_beacon_bound_while_a_run_was_judged_is_drawn_only_with_its_signed_value(beacon_env):
    lottery, store, clock = beacon_env
    committed = await lottery.commit_draw("", CAMPAIGN, DAY, timeout=1)  # no beacon yet
    await lottery.enter_draw("", CAMPAIGN, "u1", DAY, timeout=1)
    await lottery.enter_draw("", CAMPAIGN, "u2", DAY, timeout=1)
    clock.set(datetime.fromtimestamp((committed.cutoff_ms + 10_000) / 1000, tz=timezone.utc))

    async def bind_the_beacon_judged_before_the_cutoff() -> None:
        # A CommitDraw that read the clock a moment before the cut-off and is written now.
        wanted = replace(committed, beacon_source="drand:quicknet",
                         beacon_round=model.beacon_round_for("drand:quicknet", committed.cutoff_ms))
        await store.commit_draw(wanted, {"beacon_source"}, committed.cutoff_ms - 1)

    lottery.store = WriteLandingAfterTheLookUp(store, bind_the_beacon_judged_before_the_cutoff)
    try:
        drawn = await lottery.run_draw("", CAMPAIGN, DAY, ADMINS_PICK)
    except DomainError as err:
        assert err.reason == "BEACON_VALUE_MISMATCH"
    else:
        raise AssertionError(f"drawn with {drawn.beacon_value!r} for {drawn.beacon_source} round {drawn.beacon_round}")
    assert not (await store.get_draw(CAMPAIGN, DAY)).drawn
    assert (await lottery.run_draw("", CAMPAIGN, DAY, "")).beacon_value == SIGNED


async def test_a_day_committed_with_a_beacon_while_a_run_found_none_is_not_drawn_with_the_admins_value(beacon_env):
    lottery, store, clock = beacon_env
    lottery.settings = replace(lottery.settings, beacon_source="drand:quicknet")
    campaign = lottery.cards.campaign
    cutoff = model.cutoff_ms(date(2026, 1, 28), campaign.zone, time(20, 0))
    clock.set(datetime.fromtimestamp((cutoff + 10_000) / 1000, tz=timezone.utc))

    async def an_entry_judged_before_the_cutoff() -> None:
        # An EnterDraw that read the clock a moment before the cut-off and creates the day now.
        await store.enter(lottery.fresh_draw(campaign, date(2026, 1, 28), cutoff - 1), "u1", cutoff - 1, "")

    lottery.store = WriteLandingAfterTheLookUp(store, an_entry_judged_before_the_cutoff)
    try:
        drawn = await lottery.run_draw("", CAMPAIGN, DAY, ADMINS_PICK)
    except DomainError as err:
        assert err.reason == "BEACON_VALUE_MISMATCH"
    else:
        raise AssertionError(f"drawn with {drawn.beacon_value!r} for {drawn.beacon_source} round {drawn.beacon_round}")
    assert not (await store.get_draw(CAMPAIGN, DAY)).drawn


@pytest.mark.parametrize("request_id", ["r\n1", "r\x00", "r\x1f", "r\x85"])
async def test_a_request_id_with_a_control_character_is_invalid_id_on_every_write(env, request_id):
    lottery, cards, clock = env
    cards.counts["u"] = 3
    calls = {
        "EnterDraw": lambda: lottery.enter_draw(request_id, CAMPAIGN, "u", DAY, timeout=1),
        "CommitDraw": lambda: lottery.commit_draw(request_id, CAMPAIGN, DAY, timeout=1),
        "RunDraw": lambda: lottery.run_draw(request_id, CAMPAIGN, DAY, ""),
    }
    for name, call in calls.items():
        with pytest.raises(DomainError) as err:
            await call()
        assert err.value.reason == "INVALID_ID", name
        assert [f for f, _ in err.value.violations] == ["request_id"], name
    assert await lottery.store.get_draw(CAMPAIGN, DAY) is None
