"""`make demo` with its own suite, and the terminal goes away (window closed, ssh dropped): the
hang-up reaches only the demo (the suite runs in its own session), so the demo must stop its
suite as Ctrl-C does, not die and leave five servers running. Run in a child process: before the
fix SIGHUP killed the process it reached."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import asyncio, sys
from pathlib import Path
import scripts.demo as demo

marker = Path(sys.argv[1])


class FakeSuite:
    data = marker.parent

    def stop(self):
        marker.write_text("stopped")
        return 0

    def remove_data(self):
        pass


async def main_async(args, holder):
    holder.append(FakeSuite())
    print("story running", flush=True)
    await asyncio.sleep(60)
    return 0


demo.main_async = main_async
sys.exit(demo.main([]))
"""


def test_a_hang_up_stops_the_own_suite_and_ends_the_demo(tmp_path):
    marker = tmp_path / "suite-stopped"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "protos"), str(ROOT)]))
    for var in [v for v in env if v.startswith("MIANDAN_")]:
        env.pop(var)
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "story running"
        time.sleep(0.2)
        child.send_signal(signal.SIGHUP)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, (child.returncode, err)
    assert marker.exists() and marker.read_text() == "stopped", (out, err)
    assert "Traceback" not in err
