"""Calls gRPC holds for a busy event loop are bounded (Settings.max_pending_calls): while a
server's loop is stuck, calls beyond the bound are refused by gRPC's core within milliseconds
instead of waiting, unseen by admission, until the loop comes back.

The client runs in a thread with a synchronous channel: the server's loop is the test's loop,
and the stuck handler blocks it (time.sleep releases the GIL, so the client and gRPC's core go on).
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import grpc
import pytest
from prometheus_client import CollectorRegistry

from services.common.auth import AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.metrics import RpcMetrics
from services.common.server import build_server

pytestmark = pytest.mark.timeout(60)

SERVICE = "test.Busy"
STUCK_S = 0.8
BURST = 24


def _register(server: grpc.aio.Server) -> None:
    async def echo(request, context):
        return request

    async def stuck(request, context):
        time.sleep(STUCK_S)  # the whole loop stops: nothing asks gRPC for the next call
        return request

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Stuck": grpc.unary_unary_rpc_method_handler(stuck),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


async def _burst_while_stuck(max_pending_calls: int) -> tuple[list[tuple[str, float]], str]:
    """(code, seconds from send to answer) of BURST calls sent while the loop is stuck, and the
    stuck call's own code."""
    settings = dataclasses.replace(
        Settings.from_env("card", {"MIANDAN_LOG_CALLS": "0"}),
        port=0, metrics_port=None, max_pending_calls=max_pending_calls,
    )
    server = build_server(
        settings, service_names=[SERVICE], register=_register, policy=AccessPolicy(settings, {}),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    md = internal_metadata(settings)

    def client() -> tuple[list[tuple[str, float]], str]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            echo = channel.unary_unary(f"/{SERVICE}/Echo")
            echo(b"warm", metadata=md, timeout=5)
            stuck = channel.unary_unary(f"/{SERVICE}/Stuck").future(b"", metadata=md, timeout=10)
            time.sleep(0.2)  # the loop is now inside time.sleep
            outcomes: list[tuple[str, float]] = []
            lock = threading.Lock()

            def answered(sent: float):
                def record(fut: grpc.Future) -> None:
                    code = fut.code().name if fut.exception() is not None else "OK"
                    with lock:
                        outcomes.append((code, time.perf_counter() - sent))

                return record

            futures = []
            for _ in range(BURST):
                fut = echo.future(b"x", metadata=md, timeout=10)
                fut.add_done_callback(answered(time.perf_counter()))
                futures.append(fut)
            for fut in futures:
                fut.exception()  # wait for every answer
            stuck_code = stuck.code().name if stuck.exception() is not None else "OK"
            deadline = time.monotonic() + 5
            while len(outcomes) < BURST and time.monotonic() < deadline:
                time.sleep(0.01)
            return outcomes, stuck_code

    try:
        return await asyncio.to_thread(client)
    finally:
        await server.stop(0)


async def test_calls_beyond_the_bound_are_refused_at_once_while_the_loop_is_stuck():
    outcomes, stuck_code = await _burst_while_stuck(max_pending_calls=2)
    refused = [s for code, s in outcomes if code == "CANCELLED"]
    served = [code for code, _ in outcomes if code == "OK"]
    assert stuck_code == "OK"
    assert len(outcomes) == BURST
    assert {code for code, _ in outcomes} <= {"OK", "CANCELLED"}
    # At most one call was already asked for and four (2 x 2) may wait: the rest are refused...
    assert len(served) <= 1 + 2 * 2 and len(refused) >= BURST - 5
    # ...while the loop is still stuck, not when it comes back.
    assert max(refused) < STUCK_S / 2


async def test_without_a_bound_every_call_waits_for_the_stuck_loop():
    # The control: gRPC's own limits (1000) hold the whole burst, so every call is served late.
    outcomes, stuck_code = await _burst_while_stuck(max_pending_calls=0)
    assert stuck_code == "OK"
    assert [code for code, _ in outcomes] == ["OK"] * BURST
    assert min(s for _, s in outcomes) > STUCK_S / 2
