"""`make run` in a terminal that goes away (the window closed, the ssh session dropped) gets
SIGHUP. Its children run in their own sessions, so the hang-up reaches only the suite: it must
stop them as Ctrl-C does, not die and leave five servers holding the ports and stores."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def test_a_hang_up_stops_every_child_then_the_suite(tmp_path):
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_DATA=str(tmp_path / "data"),
               MIANDAN_HOST="127.0.0.1", MIANDAN_LOG_CALLS="0", MIANDAN_DRAND_RELAYS="off")
    for name in SERVICES:
        env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
        env.pop(f"MIANDAN_{name.upper()}_ADDR", None)
    log = open(tmp_path / "suite.out", "w+")
    suite = subprocess.Popen([sys.executable, "-m", "services.suite", "--no-seed"], env=env, stdout=log,
                             stderr=subprocess.STDOUT, cwd=ROOT)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while "miandan suite ready" not in (tmp_path / "suite.out").read_text():
            assert suite.poll() is None and time.monotonic() < deadline, (tmp_path / "suite.out").read_text()
            time.sleep(0.1)
        text = (tmp_path / "suite.out").read_text()
        pids = [int(line.rsplit("(pid ", 1)[1].rstrip(")")) for line in text.splitlines() if "(pid " in line]
        assert len(pids) == len(SERVICES), text

        suite.send_signal(signal.SIGHUP)
        suite.wait(timeout=30)
        left = [pid for pid in pids if _alive(pid)]
        assert not left, f"children left running after SIGHUP: {left}\n{(tmp_path / 'suite.out').read_text()}"
        assert "miandan suite stopped" in (tmp_path / "suite.out").read_text()
    finally:
        for pid in pids:  # whatever the outcome, no server of this test outlives it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if suite.poll() is None:
            suite.kill()
            suite.wait()
        log.close()
