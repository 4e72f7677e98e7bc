"""The overload table's second half: refusals by where they were made, and each step's CPU window."""
from __future__ import annotations

import math
import os
import time

from bench.loadgen import CpuMeter, Result
from bench.overload import REFUSED_BY, refusal_cells


def test_refusals_are_split_between_grpcs_core_and_admission_by_status_code():
    r = Result()
    for ms in (1.0, 2.0, 3.0, 4.0):
        r.add("PlaceOrder", "CANCELLED", ms)
    for ms in (40.0, 60.0):
        r.add("PlaceOrder", "UNAVAILABLE/OVERLOADED", ms)
    r.add("PlaceOrder", "OK", 100.0)
    r.add("PlaceOrder", "CLIENT_THROTTLED", 0.0)  # the app's own refusal: neither
    refused = {where: r.latencies("PlaceOrder", kinds) for where, kinds in REFUSED_BY}
    core_rate, core_p50, core_p99, adm_rate, adm_p50, adm_p99 = refusal_cells(refused, seconds=2.0)
    assert (core_rate, adm_rate) == (2.0, 1.0)
    assert core_p50 <= core_p99 <= 4.0 and core_p99 >= 3.0
    assert 40.0 <= adm_p50 <= adm_p99 <= 60.0


def test_a_step_without_refusals_shows_no_latency_rather_than_zero():
    cells = refusal_cells({where: [] for where, _ in REFUSED_BY}, seconds=1.0)
    assert cells[0] == 0.0 and math.isnan(cells[1]) and math.isnan(cells[2])


def test_the_cpu_window_closes_after_the_step_not_when_the_caller_asks():
    meter = CpuMeter({"self": os.getpid()})
    meter.measure_for(0.3)
    end = time.perf_counter() + 0.15
    while time.perf_counter() < end:  # busy inside the window
        pass
    used = meter.wait()["self"]
    time.sleep(0.2)  # idle after it: must not count, must not change the figure
    assert 0.05 <= used <= 0.5
    assert meter.used["self"] == used
