"""The demo's own-suite cut-off: a whole campaign-local minute (MIANDAN_LOTTERY_CUTOFF is HH:MM)
at least the requested lead ahead, and never one that would belong to the next local day."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from scripts.demo import SHANGHAI, plan_cutoff


def shanghai(h: int, m: int, s: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 11, 25, h, m, s, us, tzinfo=SHANGHAI)


def test_rounds_up_to_the_first_whole_minute_after_the_lead():
    plan = plan_cutoff(shanghai(21, 34, 3).astimezone(timezone.utc), 20)
    assert plan.cutoff == time(21, 35)
    assert plan.env_value == "21:35"
    assert plan.at == shanghai(21, 35)


def test_a_lead_landing_exactly_on_a_minute_keeps_that_minute():
    assert plan_cutoff(shanghai(12, 0, 0), 60).cutoff == time(12, 1)
    assert plan_cutoff(shanghai(12, 0, 0, 1), 60).cutoff == time(12, 2)


@pytest.mark.parametrize("second", [0, 1, 17, 40, 59])
@pytest.mark.parametrize("lead", [20, 60, 90])
def test_cutoff_is_at_least_the_lead_and_less_than_a_minute_more(second, lead):
    now = shanghai(10, 7, second, 500_000)
    plan = plan_cutoff(now, lead)
    assert timedelta(seconds=lead) <= plan.at - now < timedelta(seconds=lead + 60)
    assert plan.at.second == 0 and plan.at.microsecond == 0


def test_uses_campaign_local_time_not_utc():
    # 16:10 UTC is 00:10 the next day in Shanghai.
    plan = plan_cutoff(datetime(2026, 11, 25, 16, 10, 30, tzinfo=timezone.utc), 60)
    assert plan.cutoff == time(0, 12)


def test_last_minute_of_the_day_still_fits():
    plan = plan_cutoff(shanghai(23, 58, 10), 20)
    assert plan.cutoff == time(23, 59)


@pytest.mark.parametrize("now", [shanghai(23, 59, 0), shanghai(23, 59, 30), shanghai(23, 58, 50)])
def test_crossing_local_midnight_skips_the_draw_and_says_why(now):
    plan = plan_cutoff(now, 60)
    assert plan.cutoff is None
    assert plan.env_value == ""
    assert "midnight" in plan.reason
    assert plan.at.date() == (now + timedelta(days=1)).date()
