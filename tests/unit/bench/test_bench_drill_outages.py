"""The drill's outage figures: what a kill cost the crowd, read from order success times."""

from bench.drill import Kill, outage_rows, outages


def test_a_kill_that_stops_orders_shows_its_stretch_and_the_reconnect_lag() -> None:
    kill = Kill("card", killed_at=10.0, serving_at=11.0)
    # Orders every 0.1 s, none from the kill until 12.5 s: 1.5 s after the card was back.
    times = [9.0 + i / 10 for i in range(11)] + [12.5 + i / 10 for i in range(10)]
    (o,) = outages([kill], times, load_end=14.0)
    assert round(o.stall_s, 6) == 2.5
    assert round(o.resumed_s, 6) == 1.5
    assert outage_rows([o]) == [["card", "1.00", "2.50", "1.50"]]


def test_a_kill_that_does_not_stop_orders_has_only_the_usual_gaps() -> None:
    kill = Kill("lottery", killed_at=10.0, serving_at=11.0)
    times = [9.0 + i / 10 for i in range(60)]
    (o,) = outages([kill], times, load_end=15.0)
    assert round(o.stall_s, 6) == 0.1
    assert round(o.resumed_s, 6) == 0.0


def test_each_kill_is_measured_up_to_the_next_one_only() -> None:
    first, second = Kill("order", 10.0, 10.5), Kill("gateway", 20.0, 20.5)
    # Orders come back 1 s after the first kill's restart, then nothing after the second kill.
    times = [11.5 + i / 10 for i in range(80)]
    a, b = outages([second, first], times, load_end=25.0)
    assert (a.kill, b.kill) == (first, second)
    assert round(a.stall_s, 6) == 1.5
    assert round(b.stall_s, 6) == 5.0
    assert b.resumed_s is None
    assert outage_rows([b])[0][3] == "none"


def test_kills_and_their_time_down_fit_in_the_first_part_of_the_load() -> None:
    from bench.drill import RESTART_S, kill_interval

    gap = kill_interval(120.0, 10, 5.0)
    assert gap > 0
    assert 10 * (gap + 5.0 + RESTART_S) + gap <= 0.8 * 120.0 + 1e-9
    assert kill_interval(60.0, 10, 6.0) < 0  # the drill refuses such a plan
