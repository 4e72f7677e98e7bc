"""The benchmark suite's environment: what it sets decides what the figures measure."""

from pathlib import Path

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
