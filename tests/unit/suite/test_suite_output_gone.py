"""The supervisor's own output going away (`make run | tee run.log` with tee gone, a closed
terminal) must not stop it supervising: a child that dies is still restarted, and nothing is
raised that would end the suite and leave the other children running, orphaned."""
from __future__ import annotations

import io
import sys

from services.suite import Suite, say


class GoneStream(io.TextIOBase):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


class FakeProcess:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeChild:
    name = "card"

    def __init__(self) -> None:
        self.restarts = self.quick_exits = 0
        self.restart_at = None
        self.started_at = 0.0
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.process = FakeProcess()
        self.restart_at = None
        self.starts += 1


def test_a_child_that_died_is_restarted_though_the_output_is_gone(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", GoneStream())
    child = FakeChild()
    suite = Suite([child])
    child.process.returncode = -9  # kill -9
    suite.tend(100.0)  # the "card exited ... restarting" line cannot be written
    assert child.starts == 2 and child.restarts == 1
    child.process.returncode = -9
    suite.tend(200.0)
    assert child.starts == 3


def test_say_to_a_gone_stream_raises_nothing(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stderr", GoneStream())
    say("miandan suite failed to start: ...", err=True)
    say("again", err=True)
