"""Ctrl-C while `make run` is still starting stops it at once: the operator who sees a service
hang at start (a store being recovered, an upstream that never answers) is not kept waiting for
the start's timeouts, and a suite told to stop never seeds data nor says it is ready."""

import argparse
import asyncio
import os
import signal
import subprocess
import threading

import pytest

from services import suite


class FakeProcess:
    def __init__(self) -> None:
        self.returncode: int | None = None
        self.exited = threading.Event()
        self.pid = 1
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self.returncode = -sig
        self.exited.set()

    def wait(self, timeout: float | None = None) -> int:
        if not self.exited.wait(timeout):
            raise subprocess.TimeoutExpired("fake", timeout or 0)
        return self.returncode or 0

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class FakeSettings:
    grace_seconds = 1.0


class FakeChild:
    def __init__(self, name: str) -> None:
        self.name = name
        self.settings = FakeSettings()
        self.process: FakeProcess | None = None

    def start(self) -> None:
        self.process = FakeProcess()


def test_ctrl_c_during_a_start_that_hangs_stops_every_started_child_at_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MIANDAN_DATA", str(tmp_path))
    children = [FakeChild(n) for n in suite.SERVICES]
    seeded: list[bool] = []

    async def never_serving(child, timeout: float = 30.0) -> None:
        await asyncio.sleep(3600)

    async def seed(env) -> None:
        seeded.append(True)

    monkeypatch.setattr(suite, "process_specs", lambda env: children)
    monkeypatch.setattr(suite, "prepare_data_dir", lambda settings: None)
    monkeypatch.setattr(suite, "port_problems", lambda children: [])
    monkeypatch.setattr(suite, "wait_serving", never_serving)
    monkeypatch.setattr(suite, "seed_demo_data", seed)

    async def run() -> int:
        asyncio.get_running_loop().call_later(0.2, os.kill, os.getpid(), signal.SIGINT)
        return await asyncio.wait_for(suite.main_async(argparse.Namespace(no_seed=False)), 5)

    try:
        code = asyncio.run(run())
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    out = capsys.readouterr()
    assert code == 0
    started = [c for c in children if c.process is not None]
    assert [c.name for c in started] == ["card", "catalog"]  # the first wave, then Ctrl-C
    assert all(c.process.signals == [signal.SIGTERM] for c in started)
    assert not seeded
    assert "suite ready" not in out.out and "stopped before it was ready" in out.out
