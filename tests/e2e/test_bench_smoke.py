"""Benchmarks are not timed tests, but they must keep working: each runs a seconds-long smoke
version that fails only on real faults (INTERNAL/UNKNOWN answers, hung calls, a dead process,
audit findings)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadgen import realtime_permitted

ROOT = Path(__file__).resolve().parents[2]
# overload runs once, below, with the load generator placed where this machine allows.
BENCHES = ["capacity", "drill", "card", "order", "catalog", "intent", "card_store", "intake"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("bench", BENCHES)
def test_the_benchmark_smoke_run_finishes_cleanly(bench, tmp_path):
    if not (ROOT / "bench" / f"{bench}.py").exists():
        pytest.fail(f"bench/{bench}.py is missing")
    _smoke(tmp_path, bench)


def _smoke(tmp_path, bench, *args):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", TMPDIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--smoke", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=280,
    )
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def load_generator_flags() -> dict[tuple[str, ...], str]:
    """The overload run's load-generator placements this machine allows, each with the line the
    run prints when it uses it."""
    flags: dict[tuple[str, ...], str] = {}
    if len(os.sched_getaffinity(0)) >= 2:
        flags[("--pin-client",)] = "load generator pinned to CPU"
    if realtime_permitted():
        flags[("--client-priority", "realtime")] = "real-time round-robin"
    return flags


@pytest.mark.timeout(300)
def test_the_overload_curve_finishes_cleanly_with_the_load_generator_pinned_and_real_time_where_permitted(tmp_path):
    # One smoke run of the overload curve: each costs a whole suite and ~35 s of the test budget.
    # Pinning and real-time scheduling are passed where this machine allows them; where it allows
    # neither, the run is the plain one `make bench-overload` makes.
    flags = load_generator_flags()
    run = _smoke(tmp_path, "overload", *(arg for flag in flags for arg in flag), "--out", str(tmp_path))
    for flag, line in flags.items():
        assert line in run.stdout, f"{' '.join(flag)}: no {line!r} line in\n{run.stdout[-3000:]}"
    assert (tmp_path / "overload.png").exists()
