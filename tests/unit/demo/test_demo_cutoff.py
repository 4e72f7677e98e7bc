"""The demo's own-suite cut-off: a whole campaign-local second (MIANDAN_LOTTERY_CUTOFF takes
HH:MM:SS) at least the requested lead ahead, and never one that would belong to the next local day."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from scripts.demo import SHANGHAI, plan_cutoff
from services.lottery.model import parse_cutoff


def shanghai(h: int, m: int, s: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 11, 25, h, m, s, us, tzinfo=SHANGHAI)


def test_rounds_up_to_the_first_whole_second_after_the_lead():
    plan = plan_cutoff(shanghai(21, 34, 3, 250_000).astimezone(timezone.utc), 20)
    assert plan.cutoff == time(21, 34, 24)
    assert plan.env_value == "21:34:24"
    assert plan.at == shanghai(21, 34, 24)


def test_a_lead_landing_exactly_on_a_second_keeps_that_second():
    assert plan_cutoff(shanghai(12, 0, 0), 60).cutoff == time(12, 1, 0)
    assert plan_cutoff(shanghai(12, 0, 0, 1), 60).cutoff == time(12, 1, 1)
    assert plan_cutoff(shanghai(12, 0, 0), 20.5).cutoff == time(12, 0, 21)


@pytest.mark.parametrize("microsecond", [0, 1, 400_000, 999_999])
@pytest.mark.parametrize("second", [0, 1, 17, 40, 59])
@pytest.mark.parametrize("lead", [20, 45, 60, 90])
def test_cutoff_is_at_least_the_lead_and_less_than_a_second_more(microsecond, second, lead):
    now = shanghai(10, 7, second, microsecond)
    plan = plan_cutoff(now, lead)
    assert timedelta(seconds=lead) <= plan.at - now < timedelta(seconds=lead + 1)
    assert plan.at.microsecond == 0


@pytest.mark.parametrize("now", [shanghai(21, 34, 3, 250_000), shanghai(9, 59, 59, 999_999), shanghai(23, 59, 38)])
def test_the_setting_the_demo_passes_is_the_instant_it_planned(now):
    plan = plan_cutoff(now, 20)
    assert parse_cutoff(plan.env_value) == plan.cutoff
    assert datetime.combine(plan.at.date(), parse_cutoff(plan.env_value), tzinfo=SHANGHAI) == plan.at


def test_uses_campaign_local_time_not_utc():
    # 16:10:30 UTC is 00:10:30 the next day in Shanghai.
    plan = plan_cutoff(datetime(2026, 11, 25, 16, 10, 30, tzinfo=timezone.utc), 60)
    assert plan.cutoff == time(0, 11, 30)


def test_last_second_of_the_day_still_fits():
    plan = plan_cutoff(shanghai(23, 59, 38, 500_000), 20)
    assert plan.cutoff == time(23, 59, 59)
    assert plan.env_value == "23:59:59"


@pytest.mark.parametrize("now,lead", [
    (shanghai(23, 59, 40), 20),  # lands on 00:00:00, which closes the next day at its start
    (shanghai(23, 59, 39, 1), 20),  # rounds up to 00:00:00
    (shanghai(23, 59, 0), 60), (shanghai(23, 59, 30), 45), (shanghai(23, 58, 50), 90),
])
def test_crossing_local_midnight_skips_the_draw_and_says_why(now, lead):
    plan = plan_cutoff(now, lead)
    assert plan.cutoff is None
    assert plan.env_value == ""
    assert "midnight" in plan.reason
    assert plan.at.date() == (now + timedelta(days=1)).date()
