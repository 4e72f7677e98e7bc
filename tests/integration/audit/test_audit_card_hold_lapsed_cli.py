"""Over real gRPC (the in-memory servicers of test_audit_fetch): an order kept standing with
payment note CARD_HOLD_LAPSED, its card spent on another order, is printed as what it is, an
order whose card part the operator settles by hand, and the audit still exits 1."""
from __future__ import annotations

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2_grpc
from services.audit import run_audit
from tests.integration.audit.test_audit_fetch import CID, Card, Lottery, Order, World, _cli


@pytest.fixture
async def lapsed_world():
    w = World()
    # u0's card c0 paid o0; o7, made READY before its hold on c0 lapsed, stands without it.
    w.orders.append(
        order_pb2.Order(order_id="o7", user_id="u0", status=order_pb2.ORDER_STATUS_READY, card_id="c0", card_discount_fen=2_500,
                        subtotal_fen=2_800, payable_fen=300, campaign_id=CID,
                        payment=order_pb2.Payment(status=order_pb2.PAYMENT_STATUS_CAPTURED, amount_fen=300, note="CARD_HOLD_LAPSED"))
    )
    assert w.cards[0].state == card_pb2.CARD_STATE_REDEEMED and w.cards[0].order_id == "o0"
    server = grpc.aio.server()
    card_service_pb2_grpc.add_CardServiceServicer_to_server(Card(w), server)
    order_service_pb2_grpc.add_OrderServiceServicer_to_server(Order(w), server)
    lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(Lottery(w), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    w.addrs = {"card": f"127.0.0.1:{port}", "order": f"127.0.0.1:{port}", "lottery": f"127.0.0.1:{port}"}
    yield w
    await server.stop(0)


async def test_the_lapsed_order_is_the_one_finding_and_says_to_settle_it_by_hand(lapsed_world):
    findings = await run_audit(lapsed_world.addrs)
    assert [(f.check, f.ids["order_id"]) for f in findings] == [("ORDER_CARD_NOT_REDEEMED", "o7")]
    code, out = await _cli(lapsed_world.addrs["card"])
    assert code == 1, out
    [line] = [line for line in out.splitlines() if line.startswith("FINDING")]
    assert "CARD_HOLD_LAPSED" in line and "by hand" in line and "order_id=o7" in line and "order o0" in line
