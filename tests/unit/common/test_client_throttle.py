"""Client-side adaptive throttling: p = max(0, (requests - k*accepts) / (requests + 1))."""
from __future__ import annotations

import random

import pytest

from services.common.clock import FakeClock
from services.common.throttle import AdaptiveThrottle


def make(k: float = 2.0, seed: int = 1, **kw) -> tuple[AdaptiveThrottle, FakeClock]:
    clock = FakeClock()
    rng = random.Random(seed)
    return AdaptiveThrottle(k, time_source=lambda: clock.now().timestamp(), rng=rng.random, **kw), clock


def test_a_backend_that_accepts_everything_is_never_throttled() -> None:
    t, _ = make()
    for _ in range(10_000):
        assert t.admit()
        t.record("OK")
    assert t.throttled == 0 and t.reject_probability() == 0.0


def test_answers_that_are_not_overload_count_as_accepted() -> None:
    t, _ = make()
    for code in ["INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "DEADLINE_EXCEEDED"] * 500:
        assert t.admit()
        t.record(code)
    assert t.throttled == 0


def test_under_overload_the_client_sends_about_k_times_what_is_accepted() -> None:
    # 1,000 arrivals/s for 30 s at a backend that can accept 200/s.
    t, clock = make(k=2.0)
    sent = accepted = 0
    budget_this_second, second = 200, 0
    for i in range(30_000):
        clock.advance(0.001)
        if i // 1000 != second:
            second, budget_this_second = i // 1000, 200
        if not t.admit():
            continue
        sent += 1
        if budget_this_second > 0:
            budget_this_second -= 1
            accepted += 1
            t.record("OK")
        else:
            t.record("UNAVAILABLE")
    # The backend still gets all it can do, and only about k x that reaches it at all.
    assert accepted >= 0.95 * 200 * 30
    assert sent == pytest.approx(2.0 * accepted, rel=0.15)
    assert t.throttled == 30_000 - sent


def test_a_call_the_server_reset_counts_as_refused() -> None:
    # CANCELLED reaches a caller that never cancels only when the server's side refused the
    # call (gRPC's core holding too many calls for a busy loop), so it throttles like UNAVAILABLE.
    t, _ = make(k=2.0)
    for _ in range(2000):
        if t.admit():
            t.record("CANCELLED")
    assert t.throttled > 1500


def test_history_leaves_the_window_so_a_recovered_backend_gets_full_traffic_again() -> None:
    t, clock = make(window_s=10.0, buckets=10)
    for _ in range(1000):
        if t.admit():
            t.record("RESOURCE_EXHAUSTED")
    assert t.reject_probability() > 0.9
    clock.advance(5.0)
    assert 0.0 < t.reject_probability() <= 1.0  # half the window still remembers
    clock.advance(5.0)
    assert t.reject_probability() == 0.0 and t.requests == 0 and t.accepts == 0
    clock.advance(3600.0)  # a long quiet spell is handled in one step
    assert t.admit()


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        AdaptiveThrottle(0.5)


def test_a_cold_client_with_calls_in_flight_does_not_refuse_anything() -> None:
    # 500 calls sent before the first answer arrives: none of them may be refused locally.
    t, _ = make()
    assert all(t.admit() for _ in range(500))
    for _ in range(500):
        t.record("OK")
    assert t.throttled == 0


def test_a_backend_that_stops_answering_is_throttled_before_its_answers_arrive() -> None:
    t, clock = make()
    for _ in range(50):  # a warm client: answers flow
        assert t.admit()
        t.record("OK")
    sent = 0
    for _ in range(1000):  # then nothing comes back: calls pile up unanswered
        clock.advance(0.001)
        sent += t.admit()
    assert sent < 300
