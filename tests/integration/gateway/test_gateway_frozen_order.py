"""A frozen order service (an in-process OrderService that takes every call and never answers:
what `kill -STOP` of the order process looks like to the gateway) must not starve the gateway's
other calls. The real gateway, card and lottery servers (in-process, real SQLite on tmp_path,
port 0): a crowd of PlaceOrders waits on the frozen service while new users Join, read their
wallet and enter the lottery. Before the per-upstream bulkhead the orders held every gateway slot
and these were refused OVERLOADED for the whole freeze; now, once the order service's oldest call
has waited MIANDAN_UPSTREAM_STALL_MS (500 ms), the orders hold half of them, the calls beyond are
ended and new ones refused at once (UNAVAILABLE / UPSTREAM_SATURATED, retry in ~1 s), and the
other calls are served."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import grpc
import pytest

from miandan.card.v1 import card_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.order.v1 import order_service_pb2_grpc
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(60)

ORDER_DEADLINE_S = 3.0


class FrozenOrder(order_service_pb2_grpc.OrderServiceServicer):
    """Takes every call in and answers none (until the test ends)."""

    def __init__(self) -> None:
        self.taken = 0
        self.thaw = asyncio.Event()

    async def PlaceOrder(self, request, context):
        self.taken += 1
        await self.thaw.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "thawed after the test")


@pytest.fixture
async def frozen():
    order = FrozenOrder()
    server = grpc.aio.server()
    order_service_pb2_grpc.add_OrderServiceServicer_to_server(order, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield order, f"127.0.0.1:{port}"
    finally:
        order.thaw.set()
        await server.stop(0)


async def _outcome(call) -> str:
    try:
        await call
        return "OK"
    except grpc.aio.AioRpcError as err:
        d = error_details(err)
        return f"{err.code().name}/{d['reason']}"


async def test_join_wallet_and_lottery_are_served_while_orders_wait_on_a_frozen_order_service(tmp_path, card_lottery_gateway, frozen):
    order, order_addr = frozen
    async with card_lottery_gateway(tmp_path, card_pb2.CampaignRules(budget_fen=10**12), order_addr=order_addr) as env:
        g = env.gateway
        host = await g.Join(gw.JoinRequest(request_id="j"), metadata=env.auth("host"), timeout=10)
        phrase = host.wallet.wallet.pass_phrase_text

        # The lunch crowd orders: every call the gateway lets through waits on the frozen service.
        start = time.perf_counter()
        crowd = [
            asyncio.create_task(
                _outcome(g.PlaceOrder(gw.PlaceOrderRequest(request_id=f"o{i}", store_id="s1"),
                                      metadata=env.auth(f"eater{i}"), timeout=ORDER_DEADLINE_S))
            )
            for i in range(120)
        ]
        # Until the order service has stalled, orders may take the whole limit (64; the rest of the
        # crowd is refused OVERLOADED after a 50 ms wait); then the 32 beyond its share end.
        while sum(t.done() for t in crowd) < 120 - 32 and time.perf_counter() - start < 1.5:
            await asyncio.sleep(0.01)
        ended = [t for t in crowd if t.done()]
        outcomes = Counter(t.result() for t in ended)
        assert outcomes == {"UNAVAILABLE/OVERLOADED": 120 - 64, "UNAVAILABLE/UPSTREAM_SATURATED": 32}, outcomes
        assert order.taken == 64
        # New orders are refused at once, without reaching the frozen service.
        again = time.perf_counter()
        late = await asyncio.gather(*(
            _outcome(g.PlaceOrder(gw.PlaceOrderRequest(request_id=f"late{i}", store_id="s1"),
                                  metadata=env.auth(f"late{i}"), timeout=ORDER_DEADLINE_S))
            for i in range(20)
        ))
        assert late == ["UNAVAILABLE/UPSTREAM_SATURATED"] * 20 and time.perf_counter() - again < 0.5
        assert order.taken == 64

        # Meanwhile, calls that never touch the order service are served.
        assert not any(t.done() for t in crowd if t not in ended)
        for i in range(3):
            friend = await g.Join(gw.JoinRequest(request_id="j", pass_phrase_text=phrase), metadata=env.auth(f"friend{i}"), timeout=5)
            assert friend.invite_accepted
            wallet = await g.GetWallet(gw.GetWalletRequest(), metadata=env.auth(f"friend{i}"), timeout=5)
            assert len(wallet.wallet.cards) == len(friend.wallet.cards)
        entered = await g.EnterLottery(gw.EnterLotteryRequest(request_id="e1"), metadata=env.auth("host"), timeout=5)
        assert entered.entry.day == "2026-01-28"
        # A burst of wallet reads as large as the slots the orders left (64 * 80 % - 32).
        wallets = await asyncio.gather(*(
            _outcome(g.GetWallet(gw.GetWalletRequest(), metadata=env.auth("host"), timeout=5)) for _ in range(16)
        ))
        assert wallets == ["OK"] * 16
        assert not any(t.done() for t in crowd if t not in ended), "all the above while the orders still wait"

        held = await asyncio.gather(*crowd)
        assert held.count("DEADLINE_EXCEEDED/None") + held.count("DEADLINE_EXCEEDED/DEADLINE_EXCEEDED") == 32, set(held)
