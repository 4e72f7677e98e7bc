"""A start that fails after build() opened the store releases it: on_stop runs (once) and the
store's connection thread ends, so nothing keeps a process that will never serve alive."""
from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy
from services.common.config import Settings
from services.common.metrics import RpcMetrics
from services.common.server import StartError, build_server, start_serving


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


async def test_a_card_server_whose_port_is_taken_closes_its_store(tmp_path, taken_port):
    from services.card.wiring import build

    settings = Settings.from_env("card", {"MIANDAN_DATA": str(tmp_path), "MIANDAN_CARD_PORT": str(taken_port)})
    before = _non_daemon_threads()
    server = await build(settings, registry=CollectorRegistry())
    opened = _non_daemon_threads() - before
    assert opened, "the store runs its connections on threads of their own"
    with pytest.raises(StartError, match=f"MIANDAN_CARD_PORT={taken_port}"):
        await server.start()
    assert not await _until_gone(opened), "the store's threads outlived a failed start"


def _server(settings, calls, *, on_start=None):
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
    )


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
