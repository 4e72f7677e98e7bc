"""What build() opened is released by the kit (services/common/resources.py): when the build or
the start fails, and after the drain of a stop, last opened first, on_stop once, whatever one
close does. Every service's store threads then end, so nothing keeps a process that stopped, or
will never serve, alive."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.local_ports import free_port
from services.common.metrics import RpcMetrics
from services.common.resources import Resources
from services.common.server import StartError, build_server, builds_server, start_serving
from services.lottery.card_client import GrpcCardDirectory

STORE_SERVICES = ("card", "catalog", "order", "lottery")


def _non_daemon_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()}


async def _until_gone(threads: set[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {t for t in threads if t.is_alive()}
        if not alive:
            return alive
        await asyncio.sleep(0.02)
    return {t for t in threads if t.is_alive()}


@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _service_settings(service: str, tmp_path, port: int = 0) -> Settings:
    nowhere = f"127.0.0.1:{free_port()}"  # upstreams that never answer: no other suite's servers
    return Settings.from_env(service, {
        "MIANDAN_DATA": str(tmp_path),
        f"MIANDAN_{service.upper()}_PORT": str(port),
        **{f"MIANDAN_{name}_ADDR": nowhere for name in ("CARD", "CATALOG", "ORDER", "LOTTERY")},
    })


async def _build(service: str, settings: Settings, **options):
    if service == "card":
        from services.card.wiring import build

        options.setdefault("registry", CollectorRegistry())
    elif service == "catalog":
        from services.catalog.wiring import build
    elif service == "order":
        from services.order.wiring import build
    elif service == "lottery":
        from services.lottery.wiring import build

        options.setdefault("beacon", None)
    else:
        from gateway.wiring import build
    return await build(settings, **options)


@pytest.mark.parametrize("service", STORE_SERVICES)
async def test_a_server_whose_port_is_taken_closes_its_store(tmp_path, taken_port, service):
    settings = _service_settings(service, tmp_path, taken_port)
    before = _non_daemon_threads()
    server = await _build(service, settings)
    opened = _non_daemon_threads() - before
    assert opened, "the store runs its connections on threads of their own"
    with pytest.raises(StartError, match=f"MIANDAN_{service.upper()}_PORT={taken_port}"):
        await server.start()
    assert not await _until_gone(opened), "the store's threads outlived a failed start"


@pytest.mark.parametrize("service", (*STORE_SERVICES, "gateway"))
async def test_a_server_that_served_closes_everything_once_it_stops(tmp_path, service):
    settings = _service_settings(service, tmp_path)
    before = _non_daemon_threads()
    server = await _build(service, settings)
    opened = _non_daemon_threads() - before
    assert await server.start() > 0
    await server.stop(0)
    assert server.resources.closed
    assert not await _until_gone(opened), "a thread outlived the stop"


class RefusingRegistry(CollectorRegistry):
    def register(self, collector) -> None:
        raise ValueError("Duplicated timeseries in CollectorRegistry")


async def test_a_card_build_that_fails_after_its_store_opened_closes_the_store(tmp_path):
    before = _non_daemon_threads()
    with pytest.raises(ValueError, match="Duplicated"):  # the campaign gauges come after the store
        await _build("card", _service_settings("card", tmp_path), registry=RefusingRegistry())
    assert (tmp_path / "card.db").exists(), "the build failed before the store opened"
    assert not await _until_gone(_non_daemon_threads() - before), "the store's threads outlived the failed build"


class UnclosableCardDirectory(GrpcCardDirectory):
    """The card client, but its close fails (a channel already broken, a library bug)."""

    async def close(self) -> None:
        await super().close()
        raise RuntimeError("card channel would not close")


async def test_a_lottery_whose_card_client_fails_to_close_still_closes_its_store(tmp_path):
    settings = _service_settings("lottery", tmp_path)
    before = _non_daemon_threads()
    server = await _build("lottery", settings, cards=UnclosableCardDirectory(settings))
    opened = _non_daemon_threads() - before
    await server.start()
    with pytest.raises(RuntimeError, match="card channel would not close"):
        await server.stop(0)
    assert not await _until_gone(opened), "the store stayed open behind a client that would not close"


def _server(settings, calls, *, on_start=None, resources=None):
    async def on_stop():
        calls.append("on_stop")

    return build_server(
        settings,
        service_names=["test.Nothing"],
        register=lambda server: None,
        policy=AccessPolicy(settings),
        on_start=on_start,
        on_stop=on_stop,
        metrics=RpcMetrics(CollectorRegistry()),
        resources=resources,
    )


def _fails_to_close(name: str) -> None:
    raise RuntimeError(f"{name} would not close")


async def test_a_built_server_closes_on_stop_then_what_build_opened_only_once_it_stops():
    calls: list[str] = []

    @builds_server
    async def build(settings, *, resources: Resources):
        resources.on_close(calls.append, "store")
        return _server(settings, calls, resources=resources)

    server = await build(Settings(service="card", port=0))
    await server.start()
    assert calls == []
    await server.stop(0)
    await server.stop(0)
    assert calls == ["on_stop", "store"]


async def test_a_failed_start_ends_the_tasks_on_start_began_before_the_store_closes():
    calls: list[str] = []

    async def sweep_forever():
        try:
            await asyncio.Event().wait()
        finally:
            calls.append("sweeper ended")

    @builds_server
    async def build(settings, *, resources: Resources):
        resources.on_close(calls.append, "store")

        async def on_start():
            resources.task(sweep_forever(), name="sweep")
            await asyncio.sleep(0)
            raise RuntimeError("upstream schema mismatch")

        return _server(settings, calls, on_start=on_start, resources=resources)

    server = await build(Settings(service="card", port=0))
    with pytest.raises(RuntimeError, match="upstream schema mismatch"):
        await server.start()
    assert calls == ["sweeper ended", "on_stop", "store"]  # last opened first


async def test_a_stop_whose_close_fails_still_closes_the_rest_and_says_so():
    calls: list[str] = []

    @builds_server
    async def build(settings, *, resources: Resources):
        resources.on_close(calls.append, "store")
        resources.on_close(_fails_to_close, "card-client")
        return _server(settings, calls, resources=resources)

    server = await build(Settings(service="card", port=0))
    await server.start()
    with pytest.raises(RuntimeError, match="card-client would not close"):
        await server.stop(0)
    assert calls == ["on_stop", "store"]


async def test_on_start_failing_still_runs_on_stop_once():
    calls: list[str] = []

    async def on_start():
        calls.append("on_start")
        raise RuntimeError("upstream missing")

    server = _server(Settings(service="card", port=0), calls, on_start=on_start)
    with pytest.raises(RuntimeError, match="upstream missing"):
        await server.start()
    await server.stop()  # later stops do not close twice
    await server.close()
    assert calls == ["on_start", "on_stop"]


async def test_a_taken_port_fails_before_on_start_and_names_the_variable(taken_port):
    calls: list[str] = []

    async def on_start():
        calls.append("on_start")

    server = _server(Settings(service="order", port=taken_port), calls, on_start=on_start)
    with pytest.raises(StartError, match=rf"already in use \(MIANDAN_ORDER_PORT={taken_port}\)"):
        await server.start()
    assert calls == ["on_stop"]


async def test_a_host_that_does_not_resolve_is_named():
    calls: list[str] = []
    server = _server(Settings(service="card", host="no-such-host.invalid", port=0), calls)
    with pytest.raises(StartError, match="MIANDAN_HOST='no-such-host.invalid'"):
        await server.start()
    assert calls == ["on_stop"]


async def test_a_taken_metrics_port_closes_what_build_opened(taken_port):
    calls: list[str] = []
    settings = Settings(service="lottery", port=0, metrics_port=taken_port)
    server = _server(settings, calls)
    with pytest.raises(StartError, match="MIANDAN_LOTTERY_METRICS_PORT"):
        await start_serving(settings, server)
    assert calls == ["on_stop"]
    assert server.grpc_server is None


async def test_a_start_that_works_is_unchanged():
    calls: list[str] = []
    server = _server(Settings(service="card", port=0), calls)
    port = await server.start()
    assert port > 0 and server.grpc_server is not None
    await server.stop(0)
    assert calls == ["on_stop"]
