"""The saga's compensations against the real card service, which answers a late retry (same
request_id) of ReleaseReservation or RefundCard "as things stand" and does not act when the
order's key was held again since (services/card store._release, _refund)."""
from __future__ import annotations

from miandan.card.v1 import card_service_pb2 as card_svc
from miandan.order.v1 import order_service_pb2 as svc
from services.common.errors import DeadlineExceeded, Unavailable
from services.order import model
from tests.integration.order.test_order_with_upstreams import (
    AVAILABLE, CAKE, CAMPAIGN_ONE, RESERVED, S, line, place_req, rpc_error,
)


async def _hold_without_an_order_row(stack, user: str, request_id: str) -> str:
    """What a crash between the card call and the order's one write leaves for a to-pay order:
    the user's card held under the key of an order that has no row."""
    order_id = model.order_id_for(user, request_id)
    await stack.card.ReserveCard(
        card_svc.ReserveCardRequest(
            campaign_id=CAMPAIGN_ONE, user_id=user, order_id=order_id, amount_fen=3000, ttl_seconds=960,
        ),
        metadata=stack.md,
    )
    return order_id


async def test_a_hold_undone_after_a_crash_and_taken_again_by_the_retry_goes_back_when_the_order_is_cancelled(stack):
    (card_id,) = await stack.signup("una")
    order_id = await _hold_without_an_order_row(stack, "una", "u1")
    assert (await stack.cards("una")) == {card_id: RESERVED}
    stack.clock.advance(10)
    report = await stack.service.sweep(startup=True)
    assert report.recovered == 1 and report.failed == 0, report
    assert (await stack.cards("una")) == {card_id: AVAILABLE}
    # The app's retry holds the card again (under the key the recovery pass released).
    o = (await stack.order.PlaceOrder(place_req("u1", "una", [line(CAKE)]), metadata=stack.md, timeout=5)).order
    assert o.order_id == order_id and o.status == S.ORDER_STATUS_PENDING_PAYMENT and o.card_id == card_id
    assert (await stack.cards("una")) == {card_id: RESERVED}
    cancelled = (
        await stack.order.CancelOrder(
            svc.CancelOrderRequest(request_id="x", order_id=order_id, user_id="una", reason="不要了"), metadata=stack.md
        )
    ).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED and cancelled.card_returned
    # Given back now, not once the payment window's hold runs out (16 minutes without a free order).
    assert (await stack.cards("una")) == {card_id: AVAILABLE}


def _answer_lost_once(target, name: str, error):
    """The call reaches the card service and is done there; its answer never comes back (once)."""
    real = getattr(target, name)
    lost: list[str] = []

    async def call(*args, **kwargs):
        result = await real(*args, **kwargs)
        if not lost:
            lost.append(name)
            raise error
        return result

    setattr(target, name, call)
    return lost


async def test_a_placement_held_again_after_a_release_whose_answer_was_lost_gives_the_card_back_when_recovered(stack):
    (card_id,) = await stack.signup("vic")
    service = stack.service
    lost_reserve = _answer_lost_once(service.card, "reserve", DeadlineExceeded("UPSTREAM_DEADLINE", "lost"))
    lost_release = _answer_lost_once(service.card, "release", Unavailable("UPSTREAM_UNAVAILABLE", "lost"))
    code, _ = await rpc_error(stack.order.PlaceOrder(place_req("v1", "vic", [line(CAKE)]), metadata=stack.md, timeout=5))
    await service.drain()
    assert code == "DEADLINE_EXCEEDED" and lost_reserve and lost_release
    # The compensation's release was done, its answer lost: the row waits as PLACING.
    assert (await stack.cards("vic")) == {card_id: AVAILABLE}
    # The retry resumes the row with the same key and holds the card again; the payment
    # provider fails it before the order is written, so the row stays PLACING for the sweep.
    failing = stack.payments.create_intent

    async def no_intent(*args, **kwargs):
        raise RuntimeError("payment provider down")

    stack.payments.create_intent = no_intent
    await rpc_error(stack.order.PlaceOrder(place_req("v1", "vic", [line(CAKE)]), metadata=stack.md, timeout=5))
    stack.payments.create_intent = failing
    assert (await stack.cards("vic")) == {card_id: RESERVED}
    stack.clock.advance(31)
    report = await service.sweep()
    assert report.recovered == 1 and report.failed == 0, report
    # The aborted attempt's card is back with its owner at once, and the user's retry (the next
    # attempt) is free again, not at full price for want of a card.
    assert (await stack.cards("vic")) == {card_id: AVAILABLE}
    again = (await stack.order.PlaceOrder(place_req("v1", "vic", [line(CAKE)]), metadata=stack.md, timeout=5)).order
    assert again.status == S.ORDER_STATUS_PENDING_PAYMENT and again.card_id == card_id and again.card_discount_fen == 2500
