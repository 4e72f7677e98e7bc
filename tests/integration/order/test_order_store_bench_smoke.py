"""bench.order_store is not a timed test, but it must keep working against the real store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_order_store_benchmark_smoke_run_prints_both_figures(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", TMPDIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "bench.order_store", "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert any(l.startswith("sql ") for l in lines) and any(l.startswith("store ") for l in lines), run.stdout
