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
BENCHES = ["capacity", "overload", "drill", "card", "order", "catalog", "intent", "card_store", "intake"]


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


@pytest.mark.timeout(300)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin-client needs two CPUs")
def test_the_overload_curve_with_the_load_generator_on_a_cpu_of_its_own_finishes_cleanly(tmp_path):
    run = _smoke(tmp_path, "overload", "--pin-client", "--out", str(tmp_path))
    assert "load generator pinned to CPU" in run.stdout and (tmp_path / "overload.png").exists()


@pytest.mark.timeout(300)
@pytest.mark.skipif(not realtime_permitted(), reason="real-time scheduling needs root or CAP_SYS_NICE")
def test_the_overload_curve_with_a_real_time_load_generator_finishes_cleanly(tmp_path):
    run = _smoke(tmp_path, "overload", "--client-priority", "realtime", "--out", str(tmp_path))
    assert "real-time round-robin" in run.stdout and (tmp_path / "overload.png").exists()
