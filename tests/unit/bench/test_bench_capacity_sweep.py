"""The capacity bench sweeps load levels: the capacity is the most orders/s at a level whose p99
meets the target, held against the most empty calls/s of any level."""
from __future__ import annotations

from bench.capacity import TARGET_P99_MS, Level, capacity_level, sweep_text
from bench.loadgen import Result


def _level(concurrency: int, orders: int, latency_ms: float, seconds: float = 10.0, empty_rate: float = 3000.0) -> Level:
    result = Result()
    result.orders = orders
    for _ in range(100):
        result.add("PlaceOrder", "OK", latency_ms)
    return Level(3, concurrency, seconds, empty_rate=empty_rate, result=result)


def test_the_capacity_is_the_busiest_level_that_meets_the_latency_target():
    calm, knee, queued = _level(8, 2_600, 60.0), _level(16, 3_700, 150.0), _level(24, 3_900, TARGET_P99_MS + 50)
    assert capacity_level([calm, knee, queued]) is knee


def test_a_level_that_sheds_is_past_capacity_however_fast_it_answers_the_rest():
    knee, shedding = _level(16, 3_700, 150.0), _level(24, 3_900, 150.0)
    for _ in range(5):
        shedding.result.add("PlaceOrder", "UNAVAILABLE", 2.0)
    assert capacity_level([knee, shedding]) is knee


def test_without_any_level_meeting_the_target_the_least_queued_is_reported():
    slow, slower = _level(8, 2_000, 250.0), _level(16, 2_100, 400.0)
    assert capacity_level([slower, slow]) is slow


def test_a_level_that_placed_nothing_is_never_the_capacity():
    idle, busy = _level(8, 0, 5.0), _level(16, 3_000, 120.0)
    assert capacity_level([idle, busy]) is busy


def test_the_sweep_table_marks_the_capacity_and_the_ceiling():
    a, b = _level(8, 2_600, 60.0, empty_rate=2_900), _level(16, 3_700, 150.0, empty_rate=3_600)
    a.result.add("PlaceOrder", "UNAVAILABLE", 3.0)
    text = sweep_text([a, b], chosen=b, ceiling=b)
    rows = {line.split()[2]: line for line in text.splitlines() if line.startswith("3 x ")}
    assert "capacity ceiling" in rows["16"] and "capacity" not in rows["8"]
    assert "370.0" in rows["16"] and "2,900" in rows["8"]
    assert rows["8"].split()[-1] == "1"  # the one UNAVAILABLE answer
