"""The real gateway server (wiring.build, port 0) in front of deliberately controllable upstream
gRPC servers in the same process: what crosses the wire to the upstreams (credential,
criticality, deadline, user id), retries, deadline propagation, stream cancellation, and the
overload answer."""
from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from services.common.admission import Overloaded
from services.common.config import Settings
from services.common.errors import Unavailable, error_details, to_rpc_status

from gateway.token import mint
from gateway.wiring import MAX_REQUEST_BYTES, build

pytestmark = pytest.mark.timeout(60)


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict]] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.remaining: list[float | None] = []

    def record(self, name: str, request: object, context: grpc.aio.ServicerContext) -> None:
        self.calls.append((name, request, dict(context.invocation_metadata())))

    def of(self, name: str) -> list[tuple[object, dict]]:
        return [(r, md) for n, r, md in self.calls if n == name]


class SlowCard(card_service_pb2_grpc.CardServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.wallet_delay = 0.0

    async def GetWallet(self, request, context):
        self.seen.record("GetWallet", request, context)
        self.seen.remaining.append(context.time_remaining())
        try:
            # Work in small steps, as a real handler between upstream calls and store reads.
            for _ in range(int(self.wallet_delay / 0.01)):
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.seen.cancelled.append("GetWallet")
            raise
        self.seen.finished.append("GetWallet")
        return card_service_pb2.GetWalletResponse(wallet=card_pb2.Wallet(user_id=request.user_id, lottery_threshold=3))

    async def ListCards(self, request, context):
        self.seen.record("ListCards", request, context)
        return card_service_pb2.ListCardsResponse()


class ScriptedOrder(order_service_pb2_grpc.OrderServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.failures: list[object] = []  # DomainErrors to answer before succeeding
        self.place_delay = 0.0

    async def _maybe_fail(self, context) -> None:
        if self.failures:
            await context.abort_with_status(to_rpc_status(self.failures.pop(0)))

    async def GetOrder(self, request, context):
        self.seen.record("GetOrder", request, context)
        await self._maybe_fail(context)
        return order_service_pb2.GetOrderResponse(order=order_pb2.Order(order_id=request.order_id, user_id=request.user_id))

    async def PlaceOrder(self, request, context):
        self.seen.record("PlaceOrder", request, context)
        await self._maybe_fail(context)
        if self.place_delay:
            await asyncio.sleep(self.place_delay)
        return order_service_pb2.PlaceOrderResponse(order=order_pb2.Order(order_id="o-1", user_id=request.user_id))

    async def WatchOrder(self, request, context):
        self.seen.record("WatchOrder", request, context)
        try:
            yield order_service_pb2.WatchOrderResponse(order=order_pb2.Order(order_id=request.order_id, status=order_pb2.ORDER_STATUS_PAID))
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.seen.cancelled.append("WatchOrder")
            raise


class SlowCatalog(catalog_service_pb2_grpc.CatalogServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.delay = 0.0

    async def SearchStores(self, request, context):
        self.seen.record("SearchStores", request, context)
        await asyncio.sleep(self.delay)
        return catalog_service_pb2.SearchStoresResponse(stores=[catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id="s1"))])

    async def GetMenu(self, request, context):
        self.seen.record("GetMenu", request, context)
        await asyncio.sleep(self.delay)
        return catalog_service_pb2.GetMenuResponse(store=catalog_pb2.Store(store_id=request.store_id))


class Lottery(lottery_service_pb2_grpc.LotteryServiceServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def GetDraw(self, request, context):
        self.seen.record("GetDraw", request, context)
        return lottery_service_pb2.GetDrawResponse(draw=lottery_pb2.Draw(day="2026-01-28", status=lottery_pb2.DRAW_STATUS_OPEN))

    async def ListMyEntries(self, request, context):
        self.seen.record("ListMyEntries", request, context)
        return lottery_service_pb2.ListMyEntriesResponse()


class Harness:
    def __init__(self) -> None:
        self.seen = Seen()
        self.card, self.order = SlowCard(self.seen), ScriptedOrder(self.seen)
        self.catalog, self.lottery = SlowCatalog(self.seen), Lottery(self.seen)
        self.upstream: grpc.aio.Server | None = None
        self.gateway = None
        self.channel: grpc.aio.Channel | None = None

    async def start(self, **settings_changes) -> None:
        self.upstream = grpc.aio.server()
        card_service_pb2_grpc.add_CardServiceServicer_to_server(self.card, self.upstream)
        order_service_pb2_grpc.add_OrderServiceServicer_to_server(self.order, self.upstream)
        catalog_service_pb2_grpc.add_CatalogServiceServicer_to_server(self.catalog, self.upstream)
        lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(self.lottery, self.upstream)
        port = self.upstream.add_insecure_port("127.0.0.1:0")
        await self.upstream.start()
        addr = f"127.0.0.1:{port}"
        self.settings = dataclasses.replace(
            Settings.from_env("gateway", {"MIANDAN_GATEWAY_PORT": "0", "MIANDAN_LOG_CALLS": "0"}),
            card_addr=addr, catalog_addr=addr, order_addr=addr, lottery_addr=addr, **settings_changes,
        )
        self.gateway = await build(self.settings, campaign_id="spring-2026")
        gport = await self.gateway.start()
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{gport}")
        self.stub = gateway_service_pb2_grpc.GatewayServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def auth(self, user: str = "alice") -> tuple:
        return (("authorization", f"Bearer {mint(self.settings, user)}"),)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.gateway is not None:
            await self.gateway.stop(0)
        if self.upstream is not None:
            await self.upstream.stop(0)


@pytest.fixture
async def harness():
    h = Harness()
    await h.start()
    yield h
    await h.stop()


async def test_a_call_without_a_token_is_unauthenticated_and_reaches_no_upstream(harness):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.GetWallet(gw.GetWalletRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(info.value)["reason"] == "TOKEN_MISSING"
    assert harness.seen.calls == []


async def test_upstream_calls_carry_the_internal_credential_criticality_and_token_user(harness):
    await harness.stub.PlaceOrder(gw.PlaceOrderRequest(request_id="r1", store_id="s1"), metadata=harness.auth("alice"), timeout=5)
    request, md = harness.seen.of("PlaceOrder")[0]
    assert request.user_id == "alice" and request.campaign_id == "spring-2026"
    assert md["x-miandan-internal-token"] == harness.settings.internal_token
    assert md["x-miandan-criticality"] == "CRITICAL"
    assert "authorization" not in md  # the end user's token never travels inward
    await harness.stub.GetWallet(gw.GetWalletRequest(), metadata=harness.auth("bob"), timeout=5)
    request, md = harness.seen.of("GetWallet")[0]
    assert request.user_id == "bob" and md["x-miandan-criticality"] == "DEFAULT"


async def test_a_slow_upstream_makes_the_gateway_answer_deadline_exceeded_on_time_and_the_upstream_stops(harness):
    harness.card.wallet_delay = 5.0
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.GetWallet(gw.GetWalletRequest(), metadata=harness.auth(), timeout=0.5)
    elapsed = time.perf_counter() - start
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 0.8
    # The upstream got the caller's remaining deadline, so it stopped instead of finishing.
    for _ in range(100):
        if "GetWallet" in harness.seen.cancelled:
            break
        await asyncio.sleep(0.01)
    assert harness.seen.cancelled == ["GetWallet"] and harness.seen.finished == []
    # The deadline the upstream saw was what was left of the caller's, not a fresh default.
    assert harness.seen.remaining[0] is not None and harness.seen.remaining[0] <= 0.5


async def test_unavailable_from_an_upstream_is_retried_for_idempotent_methods(harness):
    harness.order.failures = [Unavailable("UPSTREAM_RESTARTING", "restarting")]
    reply = await harness.stub.GetOrder(gw.GetOrderRequest(order_id="o-7"), metadata=harness.auth(), timeout=5)
    assert reply.order.order_id == "o-7"
    assert len(harness.seen.of("GetOrder")) == 2


async def test_other_upstream_errors_are_not_retried_and_reach_the_client_with_their_reason(harness):
    from services.common.errors import NotFound

    harness.order.failures = [NotFound("ORDER_NOT_FOUND", "no such order")]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.GetOrder(gw.GetOrderRequest(order_id="o-7"), metadata=harness.auth(), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(info.value)["reason"] == "ORDER_NOT_FOUND"
    assert len(harness.seen.of("GetOrder")) == 1


async def test_an_upstream_overload_reaches_the_client_as_overloaded_with_a_retry_delay(harness):
    # Three answers: more than the retry policy's attempts, so the client sees the overload.
    harness.order.failures = [Unavailable("OVERLOADED", "当前参与人数较多，请 1 秒后再试", 10)] * 3
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.PlaceOrder(gw.PlaceOrderRequest(request_id="r1", store_id="s1"), metadata=harness.auth(), timeout=5)
    details = error_details(info.value)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details["reason"] == "OVERLOADED" and details["retry_after_ms"] == 10


@pytest.mark.parametrize("rpc", ["PlaceOrder", "GetOrder"])
async def test_an_upstream_shedding_with_its_usual_one_second_delay_is_answered_at_once_with_that_delay(harness, rpc):
    # The kit's own refusal (pushback 1000 ms). gRPC's channel retries waited it out twice:
    # 2 s of a held call, or a bare DEADLINE_EXCEEDED for a caller with a shorter deadline.
    harness.order.failures = [Overloaded(1000)] * 3
    request = gw.PlaceOrderRequest(request_id="r1", store_id="s1") if rpc == "PlaceOrder" else gw.GetOrderRequest(order_id="o-1")
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(harness.stub, rpc)(request, metadata=harness.auth(), timeout=0.8)
    elapsed = time.perf_counter() - start
    details = error_details(info.value)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details["reason"] == "OVERLOADED" and details["retry_after_ms"] == 1000 and details["pushback_ms"] == 1000
    assert "当前参与人数较多" in details["message"]
    assert elapsed < 0.5
    # A refusal that says when to come back is not asked again 20 ms later: it is passed on.
    assert len(harness.seen.of(rpc)) == 1


async def test_watch_order_stops_the_upstream_stream_when_the_client_goes_away(harness):
    call = harness.stub.WatchOrder(gw.WatchOrderRequest(order_id="o-1"), metadata=harness.auth())
    first = await call.read()
    assert first.order.status == order_pb2.ORDER_STATUS_PAID
    call.cancel()
    for _ in range(200):
        if "WatchOrder" in harness.seen.cancelled:
            break
        await asyncio.sleep(0.01)
    assert harness.seen.cancelled == ["WatchOrder"]
    request, _ = harness.seen.of("WatchOrder")[0]
    assert request.user_id == "alice"


async def test_the_largest_order_a_user_can_send_passes_and_a_megabytes_request_is_refused_unread(harness):
    # 50 lines with 20 options each (the order service's maxima) with long ids: about 62 KiB.
    line = catalog_pb2.LineSelection(
        item_id="i" * 64, quantity=99,
        options=[catalog_pb2.OptionChoice(group_id="g" * 24, option_id="o" * 24) for _ in range(20)],
    )
    largest = gw.PlaceOrderRequest(request_id="r" * 64, store_id="s" * 64, lines=[line] * 50, card_id="c" * 64)
    assert 50_000 < largest.ByteSize() < MAX_REQUEST_BYTES
    await harness.stub.PlaceOrder(largest, metadata=harness.auth(), timeout=5)
    assert len(harness.seen.of("PlaceOrder")) == 1
    big = gw.OrderByTextRequest(request_id="r", text="饭" * 400_000)  # 1.2 MB
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.OrderByText(big, metadata=harness.auth(), timeout=5)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The gateway is unharmed, and nothing reached an upstream.
    assert not harness.seen.of("MatchIntent")
    await harness.stub.PlaceOrder(largest, metadata=harness.auth(), timeout=5)


async def test_a_user_may_watch_a_few_orders_at_once_and_gets_a_slot_back_when_one_closes():
    h = Harness()
    await h.start(watches_per_user=2)
    try:
        calls = [h.stub.WatchOrder(gw.WatchOrderRequest(order_id=f"o-{i}"), metadata=h.auth()) for i in range(2)]
        for call in calls:
            assert (await call.read()).order.status == order_pb2.ORDER_STATUS_PAID
        third = h.stub.WatchOrder(gw.WatchOrderRequest(order_id="o-3"), metadata=h.auth())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await third.read()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_details(info.value)["reason"] == "TOO_MANY_WATCHES"
        # Another user still watches; alice does again once she closes one.
        other = h.stub.WatchOrder(gw.WatchOrderRequest(order_id="o-9"), metadata=h.auth("bob"))
        assert (await other.read()).order.order_id == "o-9"
        calls[0].cancel()
        for _ in range(200):
            again = h.stub.WatchOrder(gw.WatchOrderRequest(order_id="o-4"), metadata=h.auth())
            try:
                assert (await again.read()).order.order_id == "o-4"
                break
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("the closed stream's slot never came back")
        assert [r.order_id for r, _ in h.seen.of("WatchOrder")].count("o-3") == 0  # refused before any upstream call
    finally:
        await h.stop()


async def test_under_a_burst_only_ok_or_overloaded_come_back_and_critical_calls_still_pass():
    h = Harness()
    await h.start(max_concurrency=4, max_wait_ms=20.0)
    try:
        h.catalog.delay = 0.2
        h.order.place_delay = 0.02
        md = h.auth()

        async def browse(i: int):
            try:
                await h.stub.SearchStores(gw.SearchStoresRequest(), metadata=md, timeout=3)
                return "OK"
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                return f"{err.code().name}/{d['reason']}/{d['pushback_ms']}/{err.details()}"

        async def place(i: int):
            await asyncio.sleep(0.05)  # while the browsing burst holds every slot it may
            await h.stub.PlaceOrder(gw.PlaceOrderRequest(request_id=f"r{i}", store_id="s1"), metadata=md, timeout=3)
            return "OK"

        start = time.perf_counter()
        results = await asyncio.gather(*(browse(i) for i in range(200)), place(0))
        elapsed = time.perf_counter() - start
        browse_results, placed = results[:-1], results[-1]
        shed = [r for r in browse_results if r != "OK"]
        assert placed == "OK"
        assert shed, "a burst 50x the limit must shed some browsing"
        assert all(r.startswith("UNAVAILABLE/OVERLOADED/") for r in shed), set(shed)
        assert "当前参与人数较多" in shed[0] and int(shed[0].split("/")[2]) > 0
        assert elapsed < 3
        health = await h.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await h.stop()


async def test_an_unreachable_upstream_is_unavailable_with_retry_advice_and_no_internal_addresses():
    settings = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_GATEWAY_PORT": "0", "MIANDAN_LOG_CALLS": "0"}),
        card_addr="127.0.0.1:1", catalog_addr="127.0.0.1:1", order_addr="127.0.0.1:1", lottery_addr="127.0.0.1:1",
    )
    server = await build(settings, campaign_id="spring-2026")
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
            md = (("authorization", f"Bearer {mint(settings, 'alice')}"),)
            for call in (stub.GetMenu(gw.GetMenuRequest(store_id="s"), metadata=md, timeout=5),
                         stub.GetWallet(gw.GetWalletRequest(), metadata=md, timeout=5)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call
                d = error_details(info.value)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert d["reason"] == "UPSTREAM_UNAVAILABLE" and d["retry_after_ms"] == 1000
                assert "127.0.0.1" not in (info.value.details() or "")
            stream = stub.WatchOrder(gw.WatchOrderRequest(order_id="o"), metadata=md, timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stream.read()
            assert error_details(info.value)["reason"] == "UPSTREAM_UNAVAILABLE"
    finally:
        await server.stop(0)


async def test_an_upstream_whose_core_refuses_the_call_is_unavailable_with_retry_advice_not_cancelled():
    # A busy upstream's gRPC core refuses calls its event loop has not taken in
    # (MIANDAN_MAX_PENDING_CALLS) with a bare CANCELLED: the end user did not cancel anything.
    h = Harness()

    async def refused_by_core(request, context):
        await context.abort(grpc.StatusCode.CANCELLED, "")

    h.order.GetOrder = refused_by_core
    await h.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await h.stub.GetOrder(gw.GetOrderRequest(order_id="o-1"), metadata=h.auth(), timeout=5)
        d = error_details(info.value)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert d["reason"] == "UPSTREAM_UNAVAILABLE" and d["retry_after_ms"] == 1000
    finally:
        await h.stop()
