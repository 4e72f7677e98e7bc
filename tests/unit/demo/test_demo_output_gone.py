"""The demo's output going away (a closed terminal, `make demo | head`) does not end it with a
BrokenPipeError before it stops its own suite: the line saying so would raise in the `finally`
that stops the suite, and the five servers would run on."""
from __future__ import annotations

import io
import sys

import scripts.demo as demo_module


class GoneStream(io.TextIOBase):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")  # a hung-up terminal

    def flush(self) -> None:
        raise OSError(5, "Input/output error")


class FakeSuite:
    data = "/nonexistent"

    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> int:
        self.stopped = True
        return 0

    def remove_data(self) -> None:
        pass


def test_the_own_suite_is_stopped_though_the_output_is_gone(monkeypatch):
    suite = FakeSuite()

    async def main_async(args, holder):
        holder.append(suite)
        sys.stdout = GoneStream()  # the terminal went away mid-story
        demo_module.say("the family joins")
        return 0

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test
    monkeypatch.setattr(demo_module, "main_async", main_async)
    for var in [v for v in __import__("os").environ if v.startswith("MIANDAN_")]:
        monkeypatch.delenv(var)
    assert demo_module.main([]) == 0
    assert suite.stopped
