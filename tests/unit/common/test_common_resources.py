"""Resources and builds_server: what a wiring opens is closed by the kit, last opened first,
each once, whatever fails, on a failed build, a failed start and a stop."""
from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.metrics import RpcMetrics
from services.common.resources import Resources
from services.common.server import build_server, builds_server


class Thing:
    """Says it closed in `closed`; its close fails when `fails`, and waits for `gate` if given."""

    def __init__(self, name: str, closed: list[str], *, fails: bool = False, gate: asyncio.Event | None = None) -> None:
        self.name, self.closed, self.fails, self.gate = name, closed, fails, gate

    async def close(self) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.closed.append(self.name)
        if self.fails:
            raise RuntimeError(f"{self.name} would not close")


class SyncThing(Thing):
    def close(self) -> None:  # type: ignore[override]
        self.closed.append(self.name)


async def test_things_close_last_opened_first_whether_their_close_is_async_or_not():
    closed: list[str] = []
    resources = Resources()
    store = resources.closing(Thing("store", closed))
    resources.closing(SyncThing("metric", closed))
    resources.on_close(closed.append, "scheduler")
    await resources.close()
    assert closed == ["scheduler", "metric", "store"]
    assert store.name == "store"  # closing() hands the thing back


async def test_a_failing_close_does_not_keep_the_others_open_and_is_raised_after_them(caplog):
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed))
    resources.closing(Thing("card-client", closed, fails=True), name="card-client")
    resources.closing(Thing("catalog-client", closed, fails=True), name="catalog-client")
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="catalog-client would not close"):
        await resources.close()
    assert closed == ["catalog-client", "card-client", "store"]
    assert sorted(r.resource for r in caplog.records) == ["card-client", "catalog-client"]


async def test_each_thing_closes_once_however_many_times_close_is_called():
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed))
    await asyncio.gather(resources.close(), resources.close())
    await resources.close()
    assert closed == ["store"] and resources.closed


async def test_a_later_close_waits_for_the_first_to_finish():
    gate = asyncio.Event()
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed, gate=gate))
    first = asyncio.ensure_future(resources.close())
    second = asyncio.ensure_future(resources.close())
    await asyncio.sleep(0)
    assert not second.done()
    gate.set()
    await asyncio.gather(first, second)
    assert closed == ["store"]


async def test_a_cancelled_close_still_closes_everything():
    gate = asyncio.Event()
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed))
    resources.closing(Thing("client", closed, gate=gate))
    closing = asyncio.ensure_future(resources.close())
    await asyncio.sleep(0)
    closing.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await resources.close()  # waits for the closes the cancelled call began
    assert closed == ["client", "store"]


async def test_a_background_task_is_cancelled_and_awaited_before_what_it_uses_closes():
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed))

    async def sweep_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append("sweeper ended")

    task = resources.task(sweep_forever(), name="sweep")
    await asyncio.sleep(0)
    await resources.close()
    assert task.cancelled()
    assert closed == ["sweeper ended", "store"]


async def test_a_background_task_that_died_is_reported_at_close_and_the_store_still_closes():
    closed: list[str] = []
    resources = Resources()
    resources.closing(Thing("store", closed))

    async def sweep_once() -> None:
        raise LookupError("sweep broke")

    resources.task(sweep_once(), name="sweep")
    await asyncio.sleep(0)
    with pytest.raises(LookupError, match="sweep broke"):
        await resources.close()
    assert closed == ["store"]


async def test_nothing_is_taken_once_closed_since_it_would_be_left_open():
    resources = Resources()
    await resources.close()
    with pytest.raises(RuntimeError, match="already closed"):
        resources.closing(Thing("late", []))

    async def work() -> None:
        pass

    with pytest.raises(RuntimeError, match="already closed"):
        resources.task(work(), name="late-task")


# --- builds_server: the kit owns the clean-up of a wiring's build ---------------------------


def _settings() -> Settings:
    return Settings(service="card", port=0)


def _server(settings: Settings, resources: Resources):
    """A server never started: nothing here binds a port."""
    metrics = RpcMetrics(CollectorRegistry())
    return build_server(settings, service_names=(), register=lambda _: None, policy=AccessPolicy(settings), metrics=metrics, resources=resources)


async def test_a_build_that_fails_after_opening_closes_what_it_opened_and_the_error_goes_on():
    closed: list[str] = []

    @builds_server
    async def build(settings: Settings, *, resources: Resources, fail: bool):
        resources.closing(Thing("store", closed))
        resources.closing(Thing("card-client", closed))
        if fail:
            raise ValueError("MIANDAN_SOMETHING='x' is not a number")
        return _server(settings, resources)

    with pytest.raises(ValueError, match="MIANDAN_SOMETHING"):
        await build(_settings(), fail=True)
    assert closed == ["card-client", "store"]


async def test_a_failing_close_after_a_failed_build_does_not_hide_why_the_build_failed():
    closed: list[str] = []

    @builds_server
    async def build(settings: Settings, *, resources: Resources):
        resources.closing(Thing("store", closed))
        resources.closing(Thing("card-client", closed, fails=True))
        raise ValueError("the reason")

    with pytest.raises(ValueError, match="the reason"):
        await build(_settings())
    assert closed == ["card-client", "store"]


async def test_a_build_that_keeps_its_resources_from_the_server_is_refused_and_closes_them():
    closed: list[str] = []

    @builds_server
    async def build(settings: Settings, *, resources: Resources):
        resources.closing(Thing("store", closed))
        return _server(settings, Resources())

    with pytest.raises(TypeError, match="must pass its resources to build_server"):
        await build(_settings())
    assert closed == ["store"]
