"""The benchmark suite's environment: what it sets decides what the figures measure."""

import os
from pathlib import Path

import pytest

from bench.loadgen import LATEST_CUTOFF, bench_env
from services.lottery.model import parse_cutoff


def test_lottery_entries_stay_open_whatever_the_hour_of_the_run(monkeypatch):
    monkeypatch.delenv("MIANDAN_LOTTERY_CUTOFF", raising=False)
    env = bench_env(Path("/tmp/x"), free_ports=False)
    assert env["MIANDAN_LOTTERY_CUTOFF"] == LATEST_CUTOFF
    assert parse_cutoff(env["MIANDAN_LOTTERY_CUTOFF"]).strftime("%H:%M") == "23:59"


def test_an_operator_cutoff_is_kept(monkeypatch):
    monkeypatch.setenv("MIANDAN_LOTTERY_CUTOFF", "12:30")
    assert bench_env(Path("/tmp/x"), free_ports=False)["MIANDAN_LOTTERY_CUTOFF"] == "12:30"


def test_the_data_dir_and_quiet_logs():
    env = bench_env(Path("/tmp/x"), free_ports=False)
    assert env["MIANDAN_DATA"] == "/tmp/x" and env["MIANDAN_LOG_CALLS"] == "0"


def test_asking_whether_real_time_is_permitted_leaves_the_caller_at_normal_priority():
    from bench.loadgen import realtime_permitted

    assert isinstance(realtime_permitted(), bool)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_real_time_generator_the_machine_does_not_permit_is_refused_before_anything_starts(monkeypatch, capsys):
    import bench.overload as overload

    monkeypatch.setattr(overload, "realtime_permitted", lambda: False)
    monkeypatch.setattr(overload, "SuiteProcess", None)  # starting a suite would fail loudly
    with pytest.raises(SystemExit) as stop:
        overload.main(["--client-priority", "realtime"])
    assert stop.value.code == 2 and "CAP_SYS_NICE" in capsys.readouterr().err
