"""MIANDAN_LOTTERY_CUTOFF at a whole second (HH:MM:SS) as well as a whole minute (HH:MM): the
demo and the end-to-end tests close a day's entries moments ahead instead of up to a minute.
Everything downstream of the setting works on the cut-off instant in milliseconds; these tests
hold the day at seconds to the same rules as at minutes: committed before it, an entry judged at
the exact millisecond, drawn after it, the beacon round the first one at or after it, and the
draw verified by both independent checkers."""
from __future__ import annotations

import math
from datetime import date, datetime, time, timezone

import pytest

from gateway.draw_verification import check_draw
from services.common.clock import FakeClock, from_ms, to_ms
from services.common.errors import DomainError
from services.lottery import model, verify
from services.lottery.handlers import DrawScheduler, Lottery
from services.lottery.model import Campaign
from services.lottery.store import SqliteLotteryStore
from services.lottery.wiring import draw_settings_from_env

CAMPAIGN = "c1"
DAY = "2026-01-28"
SH = Campaign(CAMPAIGN, "Asia/Shanghai")
# 20:00:30 in Shanghai on DAY.
CUTOFF_AT = datetime(2026, 1, 28, 12, 0, 30, tzinfo=timezone.utc)


# --- the setting ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("20:00:30", time(20, 0, 30)),
    ("9:05:07", time(9, 5, 7)),
    ("23:59:59", time(23, 59, 59)),  # the latest
    ("00:00:01", time(0, 0, 1)),  # the earliest: a second of entries
    ("20:00:00", time(20, 0)),
    ("20:00", time(20, 0)),  # HH:MM as before
    ("00:01", time(0, 1)),
])
def test_the_cutoff_setting_takes_a_whole_second_as_well_as_a_whole_minute(text, expected):
    assert model.parse_cutoff(text) == expected


@pytest.mark.parametrize("text", [
    "00:00:00", "0:00:00",  # closes each day at its start, as 00:00 does
    "24:00:00", "23:60:00", "23:59:60",  # no leap second: Python's time cannot hold it
    "20:00:5", "20:00:", "20:00:000", "20:00:00:00", "20:00:00.5", "20:0:00", "120:00:00",
    "２０:００", "２０:００:３０", "٢٠:٠٠",  # digits, but not ASCII ones (docs/conventions.md)
    "20-00-30", "20h00", "",
])
def test_a_cutoff_setting_that_is_neither_names_the_variable(text):
    with pytest.raises(ValueError, match="MIANDAN_LOTTERY_CUTOFF"):
        model.parse_cutoff(text)


def test_a_refused_cutoff_says_which_formats_and_range_are_taken():
    with pytest.raises(ValueError) as err:
        model.parse_cutoff("24:00:00")
    assert "HH:MM:SS" in str(err.value) and "23:59:59" in str(err.value)
    with pytest.raises(ValueError) as err:
        model.parse_cutoff("00:00:00")
    assert "23:59:59" in str(err.value)


def test_the_environment_sets_a_cutoff_at_a_second():
    settings = draw_settings_from_env({"MIANDAN_LOTTERY_CUTOFF": " 20:00:30 "})
    assert settings.cutoff == time(20, 0, 30)


# --- what the cut-off instant decides --------------------------------------------------------


def test_a_cutoff_at_a_second_is_that_instant_in_the_campaign_time_zone():
    cutoff = model.parse_cutoff("20:00:30")
    assert model.cutoff_ms(date(2026, 1, 28), SH.zone, cutoff) == to_ms(CUTOFF_AT)


def test_a_campaign_ending_a_few_seconds_before_the_cutoff_closes_the_day_when_it_ends():
    cutoff = model.parse_cutoff("20:00:30")
    ends = to_ms(CUTOFF_AT) - 20_000
    assert model.campaign_cutoff_ms(date(2026, 1, 28), Campaign(CAMPAIGN, end_ms=ends), cutoff) == ends
    later = to_ms(CUTOFF_AT) + 1
    assert model.campaign_cutoff_ms(date(2026, 1, 28), Campaign(CAMPAIGN, end_ms=later), cutoff) == to_ms(CUTOFF_AT)


def test_the_beacon_round_of_a_cutoff_at_a_second_is_the_first_published_at_or_after_it():
    genesis, period = model.DRAND_CHAINS["drand:quicknet"]
    cutoff = model.parse_cutoff("20:00:31")  # not on a 3 s round boundary of quicknet
    draw = model.new_draw(SH, date(2026, 1, 28), cutoff, to_ms(CUTOFF_AT) - 3_600_000, beacon_source="drand:quicknet")
    cut_s = draw.cutoff_ms / 1000
    assert cut_s == CUTOFF_AT.timestamp() + 1
    r = int(draw.beacon_round)
    assert genesis + (r - 1) * period >= cut_s > genesis + (r - 2) * period
    assert r == math.ceil((cut_s - genesis) / period) + 1


def test_an_unknown_beacon_source_names_the_cutoff_to_the_second():
    draw = model.new_draw(SH, date(2026, 1, 28), model.parse_cutoff("20:00:30"), 0, beacon_source="lottery-office:tv")
    assert draw.beacon_round == "2026-01-28T12:00:30Z"


# --- a whole day at seconds ------------------------------------------------------------------


class QualifiedCards:
    """Everyone has invited enough new users; the campaign runs all year."""

    def __init__(self) -> None:
        self.asked_before: list[int] = []

    async def get_campaign(self, campaign_id: str, *, timeout: float) -> Campaign:
        return Campaign(campaign_id, "Asia/Shanghai", 3, 0, 2**62)

    async def invited_count(self, campaign_id: str, user_id: str, before_ms: int, *, timeout: float) -> int:
        self.asked_before.append(before_ms)
        return 3

    async def close(self) -> None:
        pass


@pytest.fixture
async def day_at_seconds(tmp_path):
    store = await SqliteLotteryStore.open(tmp_path / "lottery.db")
    cards = QualifiedCards()
    clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))  # 10:00 in Shanghai
    settings = draw_settings_from_env({"MIANDAN_LOTTERY_CUTOFF": "20:00:30", "MIANDAN_LOTTERY_CAMPAIGNS": CAMPAIGN})
    try:
        yield Lottery(store, cards, clock, settings), cards, clock
    finally:
        await store.close()


async def test_a_day_with_a_cutoff_at_a_second_is_committed_with_that_instant(day_at_seconds):
    lottery, _, _ = day_at_seconds
    assert (await DrawScheduler(lottery).tick())["committed"] == [f"{CAMPAIGN}/{DAY}"]
    draw = await lottery.store.get_draw(CAMPAIGN, DAY)
    assert draw.commitment and draw.cutoff_ms == to_ms(CUTOFF_AT)
    assert model.status_of(draw, draw.cutoff_ms - 1) == model.Status.OPEN
    assert model.status_of(draw, draw.cutoff_ms) == model.Status.CLOSED


async def test_an_entry_a_millisecond_before_the_second_counts_and_one_at_it_is_closed(day_at_seconds):
    lottery, cards, clock = day_at_seconds
    clock.set(from_ms(to_ms(CUTOFF_AT) - 1))
    entry, draw, newly = await lottery.enter_draw("", CAMPAIGN, "last-in", DAY, timeout=1)
    assert newly and entry.entry_ms == to_ms(CUTOFF_AT) - 1
    # Qualification counts the invites accepted before the second, not before its minute.
    assert cards.asked_before == [to_ms(CUTOFF_AT)]
    clock.set(CUTOFF_AT)
    with pytest.raises(DomainError) as err:
        await lottery.enter_draw("", CAMPAIGN, "first-out", DAY, timeout=1)
    assert err.value.reason == "ENTRIES_CLOSED"


async def test_a_day_closed_at_a_second_is_drawn_after_it_and_both_checkers_verify_it(day_at_seconds):
    lottery, _, clock = day_at_seconds
    await DrawScheduler(lottery).tick()
    users = [f"u{i:02d}" for i in range(20)]
    for user in users:
        await lottery.enter_draw("", CAMPAIGN, user, DAY, timeout=1)
    clock.set(from_ms(to_ms(CUTOFF_AT) - 1))
    with pytest.raises(DomainError) as err:
        await lottery.run_draw("", CAMPAIGN, DAY, "")
    assert err.value.reason == "DRAW_NOT_CLOSED"
    clock.set(CUTOFF_AT)
    drawn = await lottery.run_draw("", CAMPAIGN, DAY, "")
    assert drawn.drawn and drawn.drawn_ms == to_ms(CUTOFF_AT) and len(drawn.winners) == 15

    entrants = model.sort_entrants(users)
    assert check_draw(
        seed_hex=drawn.seed.hex(), commitment=drawn.commitment, beacon_value="", entrants=entrants,
        published_entrants_hash=drawn.entrants_hash, entrant_count=drawn.entrant_count,
        winner_count=drawn.winner_count, winners=list(drawn.winners), commit_ms=drawn.commit_ms,
        cutoff_ms=drawn.cutoff_ms, drawn_ms=drawn.drawn_ms, beacon_source="",
    ).verified
    failed = [line for ok, line in verify.check(published(drawn, entrants)) if not ok]
    assert failed == []


def rfc3339(ms: int) -> str:
    return from_ms(ms).astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def published(drawn: model.DrawRecord, entrants: list[str]) -> dict:
    """The drawn day as VerifyDraw publishes it (`verify --dump`)."""
    draw = {
        "campaign_id": drawn.campaign_id, "day": drawn.day, "winner_count": drawn.winner_count,
        "status": "DRAW_STATUS_DRAWN", "commitment": drawn.commitment,
        "commit_time": rfc3339(drawn.commit_ms), "cutoff_time": rfc3339(drawn.cutoff_ms),
        "draw_time": rfc3339(drawn.drawn_ms or 0), "winners": list(drawn.winners), "seed": drawn.seed.hex(),
        "beacon_source": "", "beacon_round": "", "beacon_value": "", "entrants_hash": drawn.entrants_hash,
    }
    return {
        "draw": draw, "seed": drawn.seed.hex(), "commitment": drawn.commitment, "entrants": entrants,
        "entrants_hash": drawn.entrants_hash, "entrant_count": drawn.entrant_count,
        "algorithm": model.ALGORITHM, "algorithm_version": model.ALGORITHM_VERSION, "beacon_value": "",
        "beacon_configured": False, "winners": list(drawn.winners), "note": model.NO_BEACON_NOTE,
    }
