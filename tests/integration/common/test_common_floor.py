"""Admission at default settings over real gRPC: the kit's floor and long-window latency baseline
keep a burst of CRITICAL orders from being shed by limits that read CPU queueing as overload,
and internal callers' CRITICAL calls get the whole limit while SHEDDABLE ones are shed first."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter

import grpc
import pytest
from prometheus_client import CollectorRegistry

from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from services.common.admission import CRITICALITY_KEY, SHEDDABLE, AdmissionController
from services.common.auth import AccessPolicy, internal_metadata
from services.common.config import Settings
from services.common.errors import error_details
from services.common.metrics import RpcMetrics
from services.common.server import build_server

from gateway.token import mint
from gateway.wiring import build as build_gateway

pytestmark = pytest.mark.timeout(60)


class QueueingOrder(order_service_pb2_grpc.OrderServiceServicer):
    """An order service whose latency grows with its concurrency, as CPU queueing on a busy
    2-core box makes it: ~2 ms alone, ~80 ms with 40 orders in flight."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.placed = 0

    async def PlaceOrder(self, request, context):
        self.in_flight += 1
        try:
            await asyncio.sleep(0.002 * self.in_flight)
        finally:
            self.in_flight -= 1
        self.placed += 1
        return order_service_pb2.PlaceOrderResponse(order=order_pb2.Order(order_id=request.request_id, user_id=request.user_id))


async def test_forty_concurrent_critical_orders_through_the_gateway_are_never_shed_at_default_settings():
    order = QueueingOrder()
    upstream = grpc.aio.server()
    order_service_pb2_grpc.add_OrderServiceServicer_to_server(order, upstream)
    addr = f"127.0.0.1:{upstream.add_insecure_port('127.0.0.1:0')}"
    await upstream.start()
    # Default settings: only the port, the per-call log lines and the per-user pace differ (one
    # account plays the 40 buyers here).
    settings = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_GATEWAY_PORT": "0", "MIANDAN_LOG_CALLS": "0", "MIANDAN_USER_RATE": "0"}),
        card_addr=addr, catalog_addr=addr, order_addr=addr, lottery_addr=addr,
    )
    gateway = await build_gateway(settings, campaign_id="spring-2026")
    port = await gateway.start()
    limits: list[float] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
            md = (("authorization", f"Bearer {mint(settings, 'alice')}"),)
            outcomes: Counter[str] = Counter()

            async def place(name: str) -> None:
                try:
                    await stub.PlaceOrder(gw.PlaceOrderRequest(request_id=name, store_id="s1"), metadata=md, timeout=5)
                    outcomes["OK"] += 1
                except grpc.aio.AioRpcError as err:
                    outcomes[f"{err.code().name}/{error_details(err)['reason']}"] += 1

            # A quiet second first: the gateway learns that an order usually takes a few ms.
            quiet_until = time.monotonic() + 1.0
            i = 0
            while time.monotonic() < quiet_until:
                await place(f"quiet-{i}")
                i += 1
            assert outcomes == Counter(OK=i)

            # Then 40 buyers ordering back to back for two seconds: latency x20-40.
            async def buyer(b: int) -> None:
                n = 0
                while time.monotonic() < busy_until:
                    await place(f"busy-{b}-{n}")
                    limits.append(gateway.admission.limit)
                    n += 1

            busy_until = time.monotonic() + 2.0
            await asyncio.gather(*(buyer(b) for b in range(40)))
    finally:
        await gateway.stop(0)
        await upstream.stop(0)
    assert set(outcomes) == {"OK"}, outcomes
    assert outcomes["OK"] > i + 200
    # The limit did adapt to the queueing, but not below the floor that holds 40 orders.
    assert min(limits) >= settings.min_concurrency


async def test_an_internal_caller_marking_calls_critical_gets_the_whole_limit_while_sheddable_calls_are_shed():
    settings = dataclasses.replace(Settings.from_env("card", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None)
    release = asyncio.Event()

    async def browse(request, context):
        await release.wait()
        return request

    def register(server):
        handler = grpc.unary_unary_rpc_method_handler(browse)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Shop", {"Browse": handler}),))

    server = build_server(
        settings, service_names=["test.Shop"], register=register, policy=AccessPolicy(settings),
        criticality={"Browse": SHEDDABLE},
        admission=AdmissionController(4, min_limit=4, max_limit=4, max_wait_ms=100),
        metrics=RpcMetrics(CollectorRegistry()),
    )
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Shop/Browse")
            plain = internal_metadata(settings)
            critical = plain + ((CRITICALITY_KEY, "CRITICAL"),)
            held = [asyncio.ensure_future(call(b"s", metadata=plain, timeout=10)) for _ in range(2)]
            while server.admission.in_flight < 2:
                await asyncio.sleep(0.005)
            # SHEDDABLE may fill half the limit, and is refused at once beyond it.
            start = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"s", metadata=plain, timeout=5)
            assert error_details(info.value)["reason"] == "OVERLOADED"
            assert time.perf_counter() - start < 0.09  # no waiting for sheddable calls
            # The same method marked CRITICAL by an internal caller: the rest of the limit.
            held += [asyncio.ensure_future(call(b"c", metadata=critical, timeout=10)) for _ in range(2)]
            while server.admission.in_flight < 4:
                await asyncio.sleep(0.005)
            # Full: a CRITICAL call waits (bounded), then is told to come back.
            start = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"c", metadata=critical, timeout=5)
            assert error_details(info.value)["reason"] == "OVERLOADED"
            assert 0.09 <= time.perf_counter() - start < 2
            # Right after a wait timed out (a standing queue) even CRITICAL calls are refused
            # without waiting, for one update interval.
            start = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError):
                await call(b"c", metadata=critical, timeout=5)
            assert time.perf_counter() - start < 0.09
            await asyncio.sleep(server.admission.update_interval * 1.5)
            # Then a CRITICAL waiter gets the first slot that frees up.
            waiter = asyncio.ensure_future(call(b"w", metadata=critical, timeout=5))
            await asyncio.sleep(0.02)
            release.set()
            assert await waiter == b"w"
            assert [await h for h in held] == [b"s", b"s", b"c", b"c"]
    finally:
        release.set()
        await server.stop(0)
