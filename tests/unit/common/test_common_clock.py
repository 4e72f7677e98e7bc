from datetime import datetime, timedelta, timezone

import pytest

from services.common.clock import FakeClock, SystemClock, from_ms, is_numeric_date, now_ms

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def test_fake_clock_stands_still_until_advanced():
    clock = FakeClock(T0)
    assert clock.now() == T0
    clock.advance(30)
    clock.advance(minutes=1)
    assert clock.now() == T0 + timedelta(seconds=90)


def test_fake_clock_can_be_set_and_refuses_naive_times():
    clock = FakeClock(T0)
    clock.set(T0 + timedelta(days=1))
    assert clock.now() == T0 + timedelta(days=1)
    with pytest.raises(ValueError):
        clock.set(datetime(2026, 1, 1))


def test_system_clock_is_timezone_aware_utc():
    assert SystemClock().now().utcoffset() == timedelta(0)


def test_now_ms_round_trips_through_from_ms():
    clock = FakeClock(T0)
    assert from_ms(now_ms(clock)) == T0


@pytest.mark.parametrize("value, ok", [
    (1_767_225_600, True), (1.5e9, True), (0, True), (-1, True),
    (10**400, False), (-(10**400), False), (float("nan"), False), (float("inf"), False), (True, False), ("1", False), (None, False),
])
def test_a_numeric_date_is_a_bounded_number(value, ok):
    assert is_numeric_date(value) is ok
