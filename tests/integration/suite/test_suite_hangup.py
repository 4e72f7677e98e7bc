"""`make run` in a terminal that goes away (the window closed, the ssh session dropped) gets
SIGHUP. Its children run in their own sessions, so the hang-up reaches only the suite: it must
stop them as Ctrl-C does, not die and leave five servers holding the ports and stores. And a
suite that dies without a chance to stop them (kill -9, the OOM killer) takes them along."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from services.common.local_ports import free_port

ROOT = Path(__file__).resolve().parents[3]
SERVICES = ("card", "catalog", "order", "lottery", "gateway")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: it waits for its parent (already gone: init reaps it).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def running_suite(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[int], Path]]:
    """A suite started as `make run` starts it, ready; its pid, its children's, its output."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_DATA=str(tmp_path / "data"),
               MIANDAN_HOST="127.0.0.1", MIANDAN_LOG_CALLS="0", MIANDAN_DRAND_RELAYS="off")
    for name in SERVICES:
        env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
        env.pop(f"MIANDAN_{name.upper()}_ADDR", None)
    out = tmp_path / "suite.out"
    log = open(out, "w+")
    suite = subprocess.Popen([sys.executable, "-m", "services.suite", "--no-seed"], env=env, stdout=log,
                             stderr=subprocess.STDOUT, cwd=ROOT)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while "miandan suite ready" not in out.read_text():
            assert suite.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        text = out.read_text()
        pids = [int(line.rsplit("(pid ", 1)[1].rstrip(")")) for line in text.splitlines() if "(pid " in line]
        assert len(pids) == len(SERVICES), text
        yield suite, pids, out
    finally:
        for pid in pids:  # whatever the outcome, no server of this test outlives it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if suite.poll() is None:
            suite.kill()
            suite.wait()
        log.close()


def test_a_hang_up_stops_every_child_then_the_suite(tmp_path):
    with running_suite(tmp_path) as (suite, pids, out):
        suite.send_signal(signal.SIGHUP)
        suite.wait(timeout=30)
        left = [pid for pid in pids if _alive(pid)]
        assert not left, f"children left running after SIGHUP: {left}\n{out.read_text()}"
        assert "miandan suite stopped" in out.read_text()


def test_a_suite_killed_outright_takes_its_children_along(tmp_path):
    with running_suite(tmp_path) as (suite, pids, out):
        suite.kill()
        suite.wait(timeout=10)
        deadline = time.monotonic() + 30  # each child stops gracefully: drains, closes its store
        while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in pids if _alive(pid)]
        assert not left, f"children left running after the suite was killed: {left}\n{out.read_text()}"
