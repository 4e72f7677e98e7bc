"""Ctrl-C stops `make run` callers first: a service gets SIGTERM only once every service that
calls it has drained and exited, so the calls a draining gateway (or order service) still has
in flight find their upstreams answering instead of refusing new calls."""

import signal
import subprocess
import threading

from services.suite import SERVICES, UPSTREAMS, Suite


class FakeSettings:
    grace_seconds = 1.0


class FakeProcess:
    """Exits a little after SIGTERM, as a draining server does."""

    def __init__(self, name: str, events: list[str], lock: threading.Lock, drain: float = 0.05) -> None:
        self.name, self.events, self.lock, self.drain = name, events, lock, drain
        self.returncode: int | None = None
        self.exited = threading.Event()
        self.pid = 1

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        assert sig == signal.SIGTERM
        with self.lock:
            self.events.append(f"term {self.name}")

        def exit_later() -> None:
            with self.lock:
                self.events.append(f"exit {self.name}")
                self.returncode = 0
            self.exited.set()

        threading.Timer(self.drain, exit_later).start()

    def wait(self, timeout: float | None = None) -> int:
        if not self.exited.wait(timeout):
            raise subprocess.TimeoutExpired("fake", timeout or 0)
        return self.returncode or 0

    def kill(self) -> None:
        self.returncode = -9
        self.exited.set()


class FakeChild:
    def __init__(self, name: str, events: list[str], lock: threading.Lock) -> None:
        self.name = name
        self.settings = FakeSettings()
        self.process = FakeProcess(name, events, lock)


def _stop(names=SERVICES) -> list[str]:
    import asyncio

    events: list[str] = []
    lock = threading.Lock()
    suite = Suite([FakeChild(n, events, lock) for n in names])
    assert asyncio.run(suite.stop()) == 0
    return events


def test_a_service_is_stopped_only_after_every_service_calling_it_exited() -> None:
    events = _stop()
    assert sorted(e for e in events if e.startswith("term")) == sorted(f"term {n}" for n in SERVICES)
    for name, upstreams in UPSTREAMS.items():
        for upstream in upstreams:
            assert events.index(f"exit {name}") < events.index(f"term {upstream}"), events


def test_services_nobody_waits_on_stop_together() -> None:
    events = _stop()
    # card and catalog stop in one wave once order and lottery are gone (not one after another).
    first_exit = min(events.index("exit card"), events.index("exit catalog"))
    assert events.index("term card") < first_exit and events.index("term catalog") < first_exit, events
