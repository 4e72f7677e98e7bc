"""`python -m services.card` with one bad setting: exit status 2 and one line on stderr naming the
variable, before anything serves (services/common/server.py `main`). The parsing functions have
their own tests; these start the real process, as an operator does."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIT_BAD_SETTING = 2
STILL_SERVING_AFTER_S = 20.0  # a bad setting stops the start in about a second; this only bounds a hang


def _start_card(data_dir: Path, variable: str, value: str) -> tuple[int | None, str]:
    """(exit status, stderr); status None when the service was still running (and is stopped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIANDAN_")}
    env.update(
        PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_DATA=str(data_dir), MIANDAN_CARD_PORT="0",
        MIANDAN_CARD_METRICS_PORT="off", MIANDAN_LOG_CALLS="0",
    )
    env[variable] = value
    process = subprocess.Popen(
        [sys.executable, "-m", "services.card"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, err = process.communicate(timeout=STILL_SERVING_AFTER_S)
        return process.returncode, err
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        _, err = process.communicate(timeout=10)
        return None, err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MIANDAN_INTERNAL_TOKEN", "s3cret-token\n"),
        ("MIANDAN_GRACE_SECONDS", "5s"),
        ("MIANDAN_MAX_WAIT_MS", "nan"),
        ("MIANDAN_KEEPALIVE_SECONDS", "0"),
        ("MIANDAN_CARD_SWEEP_SECONDS", "1e309"),
        ("MIANDAN_LOG_CALLS", "maybe"),
    ],
)
def test_a_bad_setting_ends_the_card_service_with_one_line_naming_it(tmp_path, variable, value):
    status, err = _start_card(tmp_path, variable, value)
    assert status == EXIT_BAD_SETTING, f"exit status {status}; stderr:\n{err[-2000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("card: ") and variable in lines[0], err[-2000:]
    assert "Traceback" not in err
