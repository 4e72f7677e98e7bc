"""A service's channel to a peer that was down for seconds finds it again within about a second
of its return (services.common.auth channel options), instead of waiting out gRPC's growing
default backoff (1 s, x1.6 per failed attempt: after ~6 s down the next attempt is 1-5 s away).
`make drill --down-seconds 5` shows what that costs under load: orders failing 2-12 s after
the peer was back with the defaults, under 0.7 s with these options."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.auth import RECONNECT_MAX_MS, channel_options, open_channel
from services.common.config import Settings
from services.common.local_ports import free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

DOWN_S = 6.3  # past gRPC's third default attempt (4.1-6.2 s), well before its fourth (>= 7.4 s)
FOUND_WITHIN_S = 1.5  # the longest jittered wait of 1 s x 1.2, plus slack


def test_every_internal_channel_carries_the_short_reconnect_backoff() -> None:
    options = dict(channel_options())
    assert options["grpc.initial_reconnect_backoff_ms"] <= options["grpc.max_reconnect_backoff_ms"] == RECONNECT_MAX_MS <= 1_000


async def _serve_health(port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


async def test_a_peer_back_after_seconds_down_is_found_within_about_a_second() -> None:
    port = free_port()
    settings = Settings.from_env("order", {})
    async with open_channel(settings, f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def answered() -> bool:
            try:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.2)
                return True
            except grpc.aio.AioRpcError as err:
                assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                return False

        # Callers keep calling while the peer is down, as a service under load does.
        down_until = time.monotonic() + DOWN_S
        while time.monotonic() < down_until:
            assert not await answered()
            await asyncio.sleep(0.05)

        server = await _serve_health(port)
        try:
            back = time.monotonic()
            while not await answered():
                assert time.monotonic() - back < FOUND_WITHIN_S, "the channel did not find the returned peer in time"
                await asyncio.sleep(0.05)
        finally:
            await server.stop(None)
