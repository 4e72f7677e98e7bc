"""Start the whole suite the way a user starts it (`python -m services.suite`, which is what
`make run` runs), on free ports with a fresh data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.local_ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("card", "catalog", "order", "lottery", "gateway")


def suite_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}",
        MIANDAN_DATA=str(data_dir),
        MIANDAN_HOST="127.0.0.1",
        MIANDAN_LOG_CALLS="0",
        # Tests fire dozens of concurrent calls as one user on purpose (no card spent twice, one
        # order per request_id); the per-user pace has its own tests ("" restores the default).
        MIANDAN_USER_RATE="0",
    )
    for name in SERVICES:
        env[f"MIANDAN_{name.upper()}_PORT"] = str(free_port())
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = str(free_port())
        env.pop(f"MIANDAN_{name.upper()}_ADDR", None)
    env.update(overrides)
    return env


@dataclass
class RunningSuite:
    env: dict[str, str]
    process: subprocess.Popen
    output: list[str]

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.env[f'MIANDAN_{name.upper()}_PORT']}"

    def metrics_port(self, name: str) -> int:
        return int(self.env[f"MIANDAN_{name.upper()}_METRICS_PORT"])

    @property
    def settings(self):
        from services.common.config import Settings

        return Settings.from_env("gateway", self.env)

    def token(self, user: str, **kwargs) -> str:
        from gateway.token import mint

        return mint(self.settings, user, **kwargs)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_suite(data_dir: Path, timeout: float = 90.0, **overrides: str) -> RunningSuite:
    env = suite_environment(data_dir, **overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.suite"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        output.append(line.rstrip())
        if line.startswith("miandan suite ready"):
            return RunningSuite(env, process, output)
    process.kill()
    logs = ""
    for log in sorted((data_dir / "logs").glob("*.log")):
        logs += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-3000:]
    raise RuntimeError("suite did not start:\n" + "\n".join(output) + logs)


