"""One user's pace at the gateway: bursts up to `burst`, then `rate` calls per second, refused
beyond with the wait until the next call would pass."""
from __future__ import annotations

import pytest

from gateway.user_rates import USER_RATE_LIMITED, UserRates
from services.common.clock import FakeClock
from services.common.errors import ResourceExhausted


def refusal(rates: UserRates, user: str) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as err:
        rates.take(user)
    return err.value


def test_a_burst_passes_then_one_call_per_interval():
    clock = FakeClock()
    rates = UserRates(5, 20, clock=clock)
    for _ in range(20):
        rates.take("bot")
    err = refusal(rates, "bot")
    assert err.reason == USER_RATE_LIMITED and err.retry_after_ms == 200
    rates.take("alice")  # others are not slowed by the bot
    clock.advance(0.2)
    rates.take("bot")
    assert refusal(rates, "bot").retry_after_ms == 200
    assert rates.refused == 2


def test_a_script_gets_the_rate_whatever_it_sends():
    clock = FakeClock()
    rates = UserRates(5, 20, clock=clock)
    passed = 0
    for _ in range(10 * 100):  # 100 calls a second for 10 s
        try:
            rates.take("bot")
            passed += 1
        except ResourceExhausted:
            pass
        clock.advance(0.01)
    assert 20 + 5 * 10 - 1 <= passed <= 20 + 5 * 10 + 1


def test_a_person_tapping_never_meets_the_limit():
    clock = FakeClock()
    rates = UserRates(5, 20, clock=clock)
    for _ in range(6):  # an app opening a screen
        rates.take("alice")
    for _ in range(300):  # then a tap every half second for two and a half minutes
        clock.advance(0.5)
        rates.take("alice")


def test_rate_zero_turns_the_limit_off():
    rates = UserRates(0, 1, clock=FakeClock())
    for _ in range(10_000):
        rates.take("bot")
    assert len(rates) == 0


def test_memory_stays_bounded_and_a_busy_user_is_still_limited():
    clock = FakeClock()
    rates = UserRates(5, 3, tracked=1_000, clock=clock)
    for _ in range(3):
        rates.take("bot")
    for n in range(50_000):  # a crowd of one-call users, a little time apart
        rates.take(f"user-{n}")
        if n % 100 == 0:
            clock.advance(0.05)
            if n % 1_000 == 0:
                with pytest.raises(ResourceExhausted):
                    for _ in range(4):
                        rates.take("bot")
        assert len(rates) <= 1_000
    assert len(rates) <= 1_000


@pytest.mark.parametrize("rate, burst, tracked", [(-1, 1, 1), (float("inf"), 1, 1), (1, 0, 1), (1, 1, 0)])
def test_bad_settings_are_refused(rate, burst, tracked):
    with pytest.raises(ValueError):
        UserRates(rate, burst, tracked)


def test_a_wall_clock_stepped_back_does_not_lock_users_out():
    # NTP stepping the host's clock back a minute: the rate is about time elapsed, and no time
    # elapsed backwards. It used to refuse every user seen in the last seconds for ~56 s.
    clock = FakeClock()
    rates = UserRates(5, 20, clock=clock)
    for _ in range(3):
        rates.take("alice")
    clock.advance(-60)
    rates.take("alice")
    for _ in range(16):
        rates.take("bob")
        rates.take("alice")
    # The burst is still spent as before: 20 calls, the 21st waits one interval.
    assert refusal(rates, "alice").retry_after_ms == 200
    clock.advance(0.2)
    rates.take("alice")
