"""`make run` starts each service only once everything it calls is SERVING."""

import asyncio

import pytest

from services import suite
from services.suite import SERVICES, UPSTREAMS, start_in_order


class FakeChild:
    def __init__(self, name: str, events: list[str]) -> None:
        self.name, self.events = name, events

    def start(self) -> None:
        self.events.append(f"start {self.name}")


def _run(monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], fail: str = "") -> list[str]:
    events: list[str] = []

    async def wait_serving(child: FakeChild, timeout: float = 30.0) -> None:
        # The later a service comes in SERVICES, the longer it takes: waves must still wait.
        await asyncio.sleep(0.001 * SERVICES.index(child.name))
        if child.name == fail:
            raise RuntimeError(f"{child.name} exited")
        events.append(f"serving {child.name}")

    monkeypatch.setattr(suite, "wait_serving", wait_serving)
    children = [FakeChild(n, events) for n in names]
    try:
        asyncio.run(start_in_order(children))
    except RuntimeError as exc:
        events.append(f"failed: {exc}")
    return events


def test_every_service_starts_after_all_it_calls_is_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _run(monkeypatch, SERVICES)
    assert sorted(e for e in events if e.startswith("start")) == sorted(f"start {n}" for n in SERVICES)
    for name in SERVICES:
        started = events.index(f"start {name}")
        for upstream in UPSTREAMS[name]:
            assert events.index(f"serving {upstream}") < started, (name, upstream, events)
    # Services that call nothing start together rather than one after another.
    assert events[:2] == ["start card", "start catalog"]
    assert events[-1] == "serving gateway"


def test_a_service_that_fails_to_start_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _run(monkeypatch, SERVICES, fail="catalog")
    assert events[-1] == "failed: catalog exited"
    assert not any(e in events for e in ("start order", "start lottery", "start gateway"))


def test_a_partial_suite_starts_what_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    # A drill or an operator may run only some services; an absent upstream is not waited for.
    events = _run(monkeypatch, ("order", "lottery", "card"))
    assert events[:2] == ["start card", "serving card"]
    assert sorted(events[2:4]) == ["start lottery", "start order"]


def test_every_upstream_is_a_service_of_the_suite() -> None:
    assert set(UPSTREAMS) == set(SERVICES)
    assert all(set(ups) <= set(SERVICES) for ups in UPSTREAMS.values())
