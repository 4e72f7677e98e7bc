"""The recovery of a card reservation left without an order row, against the real card server
(its ListReservations, ReleaseReservation and RefundCard over gRPC)."""
from __future__ import annotations

from miandan.card.v1 import card_service_pb2 as card_svc
from miandan.order.v1 import order_service_pb2 as svc
from services.common.clock import now_ms
from services.order import model
from services.order.handlers import WATERMARK_MARGIN_MS
from tests.integration.order.test_order_with_upstreams import AVAILABLE, CAMPAIGN_ONE, REDEEMED, S, place_req


async def test_a_redeemed_card_without_an_order_row_is_refunded_and_the_retry_places_the_order(stack):
    (alice_card,) = await stack.signup("alice")
    (bob_card,) = await stack.signup("bob")
    placed = (await stack.order.PlaceOrder(place_req("a1", "alice"), metadata=stack.md, timeout=5)).order
    assert placed.status == S.ORDER_STATUS_PAID
    # What a crash between the card call and the order's one write leaves: bob's card redeemed
    # under the key of an order that has no row.
    bob_order = model.order_id_for("bob", "b1")
    await stack.card.ReserveCard(
        card_svc.ReserveCardRequest(
            request_id=f"{bob_order}:reserve", campaign_id=CAMPAIGN_ONE, user_id="bob", order_id=bob_order,
            amount_fen=1500, ttl_seconds=960, redeem=True,
        ),
        metadata=stack.md,
    )
    assert (await stack.cards("bob")) == {bob_card: REDEEMED}
    stack.clock.advance(10)
    report = await stack.service.sweep(startup=True)
    assert report.recovered == 1 and report.failed == 0, report
    assert (await stack.cards("bob")) == {bob_card: AVAILABLE}
    assert (await stack.cards("alice")) == {alice_card: REDEEMED}
    # Bob's retry takes the next attempt's key and the same card.
    again = (await stack.order.PlaceOrder(place_req("b1", "bob"), metadata=stack.md, timeout=5)).order
    assert again.order_id == bob_order and again.status == S.ORDER_STATUS_PAID and again.card_id == bob_card
    history = await stack.card.GetCardHistory(card_svc.GetCardHistoryRequest(card_id=bob_card), metadata=stack.admin_md)
    assert [(e.cause, e.order_id) for e in history.entries][1:] == [
        ("RESERVE", bob_order), ("CONFIRM", bob_order), ("REFUND", bob_order),
        ("RESERVE", f"{bob_order}.1"), ("CONFIRM", f"{bob_order}.1"),
    ]
    got = await stack.order.GetOrder(svc.GetOrderRequest(order_id=bob_order, user_id="bob"), metadata=stack.md)
    assert got.order == again
    # The next pass finds nothing left to do, and the watermark has moved past all of it.
    assert (await stack.service.sweep()).recovered == 0
    assert await stack.service.store.card_watermark() == now_ms(stack.clock) - WATERMARK_MARGIN_MS
