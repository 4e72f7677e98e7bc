"""`make run | tee run.log` (or `| head`), and the reader goes away: the next line the suite
writes fails with EPIPE. Before, that ended the supervisor with a traceback the moment a child
died, and the other four servers ran on, orphaned, with the dead one never restarted."""
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
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (ProcessLookupError, OSError, IndexError):
        return False


def _listening_lines(log: Path) -> int:
    try:
        return log.read_text(errors="replace").count(" listening on ")
    except OSError:
        return 0


def test_a_child_killed_after_the_output_pipe_closed_is_restarted_and_all_stop_on_ctrl_c(tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_DATA=str(data),
               MIANDAN_HOST="127.0.0.1", MIANDAN_LOG_CALLS="0", MIANDAN_DRAND_RELAYS="off")
    for name in SERVICES:
        env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
        env.pop(f"MIANDAN_{name.upper()}_ADDR", None)
    suite = subprocess.Popen([sys.executable, "-m", "services.suite", "--no-seed"], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 60
        for line in suite.stdout:
            if "(pid " in line:
                pids[line.split()[0]] = int(line.rsplit("(pid ", 1)[1].split(")")[0])
            if "miandan suite ready" in line:
                break
            assert time.monotonic() < deadline
        assert set(pids) == set(SERVICES), pids
        suite.stdout.close()  # the reader goes away, as `| head` or a killed tee does

        os.kill(pids["card"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _listening_lines(data / "logs" / "card.log") < 2:
            assert suite.poll() is None, f"the suite ended: {suite.stderr.read()}"
            assert time.monotonic() < deadline, "the killed card service was not restarted"
            time.sleep(0.1)
        assert suite.poll() is None

        suite.send_signal(signal.SIGINT)
        suite.wait(timeout=30)
        err = suite.stderr.read()
        assert "Traceback" not in err and "Exception ignored" not in err, err
        left = [name for name, pid in pids.items() if name != "card" and _alive(pid)]
        assert not left, f"left running: {left}\n{err}"
    finally:
        if suite.poll() is None:
            suite.send_signal(signal.SIGINT)
            try:
                suite.wait(timeout=30)
            except subprocess.TimeoutExpired:
                suite.kill()
        for pid in pids.values():  # whatever the outcome, no server of this test outlives it
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
