"""What the buyer and the merchant are told as an order ends: the last message of the buyer's
stream names the card returned and the money refunded, the merchant's stream carries each change
once, and a refund the payment provider leaves unanswered does not turn a cancellation into an
error."""
from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as card_svc
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN, STORE, LATTE, CAKE = "it-one", "it-store-1", "it-latte", "it-cake"  # 1500 and 3000 fen, a card of 2500
AVAILABLE = card_pb2.CARD_STATE_AVAILABLE


async def place(stack, user, item=LATTE):
    await stack.signup(user)
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-1", user_id=user, store_id=STORE, campaign_id=CAMPAIGN,
        lines=[catalog_pb2.LineSelection(item_id=item, quantity=1)], card_use=S.CARD_USE_BEST,
    )
    return (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=5)).order


async def place_paid_in_part(stack, user):
    """A cake: the card pays 2,500 fen of it, money the other 500."""
    order = await place(stack, user, CAKE)
    pay = svc.ConfirmPaymentRequest(
        request_id="pay", order_id=order.order_id, user_id=user, payment_reference=order.payment.payment_reference
    )
    paid = (await stack.order.ConfirmPayment(pay, metadata=stack.md, timeout=5)).order
    assert paid.status == S.ORDER_STATUS_PAID and paid.payment.status == S.PAYMENT_STATUS_CAPTURED
    return paid


def merchant_cancel(stack, order, request_id="mc"):
    return stack.order.CancelOrder(svc.CancelOrderRequest(request_id=request_id, order_id=order.order_id), metadata=stack.merchant_md, timeout=5)


def user_cancel(stack, order, user, request_id="uc"):
    return stack.order.CancelOrder(
        svc.CancelOrderRequest(request_id=request_id, order_id=order.order_id, user_id=user), metadata=stack.md, timeout=5
    )


def advance(stack, order, status, request_id):
    return stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id=request_id, order_id=order.order_id, status=status),
        metadata=stack.merchant_md, timeout=5,
    )


async def rest_of(stream):
    out = []
    while (msg := await stream.read()) is not grpc.aio.EOF:
        out.append(msg.order)
    return out


async def test_the_buyers_stream_ends_once_a_merchant_cancellation_has_returned_the_card_and_refunded_the_money(stack):
    order = await place_paid_in_part(stack, "ann")
    stream = stack.order.WatchOrder(svc.WatchOrderRequest(order_id=order.order_id, user_id="ann"), metadata=stack.md, timeout=10)
    assert (await stream.read()).order.status == S.ORDER_STATUS_PAID
    await merchant_cancel(stack, order)
    last = (await rest_of(stream))[-1]
    assert last.status == S.ORDER_STATUS_CANCELLED
    assert last.card_returned and last.payment.status == S.PAYMENT_STATUS_REFUNDED and last.payment.refunded_fen == 500


async def test_the_buyers_stream_ends_once_a_lapsed_payment_window_has_given_the_card_back(stack):
    order = await place(stack, "bea", CAKE)
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT
    stream = stack.order.WatchOrder(svc.WatchOrderRequest(order_id=order.order_id, user_id="bea"), metadata=stack.md, timeout=10)
    await stream.read()
    stack.clock.advance(15 * 60 + 1)
    await stack.service.sweep()
    last = (await rest_of(stream))[-1]
    assert last.status == S.ORDER_STATUS_CANCELLED and last.history[-1].note == "PAYMENT_TTL_PASSED"
    assert last.card_returned and last.payment.status == S.PAYMENT_STATUS_VOIDED
    assert set((await stack.cards("bea")).values()) == {AVAILABLE}


async def test_a_store_watcher_gets_each_change_once_and_nothing_for_calls_that_change_nothing(stack):
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=stack.merchant_md, timeout=20)
    for _ in range(100):  # the stream is open before the orders come
        if stack.service.events.stores.open:
            break
        await asyncio.sleep(0.02)
    order = await place(stack, "cat")
    await advance(stack, order, S.ORDER_STATUS_ACCEPTED, "acc")
    await advance(stack, order, S.ORDER_STATUS_ACCEPTED, "acc-tapped-twice")  # already ACCEPTED
    await advance(stack, order, S.ORDER_STATUS_ACCEPTED, "")
    await user_cancel(stack, order, "cat")
    await user_cancel(stack, order, "cat", "uc-again")  # already CANCELLED
    await merchant_cancel(stack, order)
    sentinel = await place(stack, "dan")  # the next change: whatever came before it has arrived
    got = []
    while not got or got[-1].order_id != sentinel.order_id:
        got.append((await feed.read()).order)
    feed.cancel()
    assert [(o.order_id, o.status, o.card_returned) for o in got] == [
        (order.order_id, S.ORDER_STATUS_PAID, False),
        (order.order_id, S.ORDER_STATUS_ACCEPTED, False),
        (order.order_id, S.ORDER_STATUS_CANCELLED, False),  # the cancellation
        (order.order_id, S.ORDER_STATUS_CANCELLED, True),  # its card back
        (sentinel.order_id, S.ORDER_STATUS_PAID, False),
    ]


@pytest.mark.parametrize("who", ["user", "merchant"])
async def test_a_cancellation_whose_refund_the_provider_leaves_unanswered_stands_and_the_sweep_refunds(stack, who):
    order = await place_paid_in_part(stack, f"eve-{who}")
    stack.payments.mode = "timeout"
    cancel = user_cancel(stack, order, f"eve-{who}") if who == "user" else merchant_cancel(stack, order)
    cancelled = (await cancel).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED and cancelled.payment.status == S.PAYMENT_STATUS_CAPTURED
    stack.payments.mode = "approve"
    await stack.service.sweep()
    now = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=order.order_id, user_id=f"eve-{who}"), metadata=stack.md)).order
    assert now.payment.status == S.PAYMENT_STATUS_REFUNDED and now.payment.refunded_fen == 500 and now.card_returned
    assert stack.payments.refunds == {order.payment.payment_id: 500}
    assert set((await stack.cards(f"eve-{who}")).values()) == {AVAILABLE}


async def test_a_card_that_expired_while_its_order_waited_for_payment_is_not_said_to_be_returned(stack):
    await stack.signup("fay")
    cards = await stack.card.ListCards(card_svc.ListCardsRequest(campaign_id=CAMPAIGN, user_id="fay"), metadata=stack.md)
    card_ends = cards.cards[0].expire_time.ToDatetime(tzinfo=timezone.utc)
    # Placed minutes before the card's validity ends: the payment window outlives the card.
    stack.clock.set(card_ends - timedelta(minutes=5))
    order = await place(stack, "fay", CAKE)
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT and order.card_id
    stack.clock.set(card_ends + timedelta(minutes=1))
    cancelled = (await user_cancel(stack, order, "fay")).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED and not cancelled.card_returned
    assert set((await stack.cards("fay")).values()) == {card_pb2.CARD_STATE_EXPIRED}


async def test_a_store_watcher_sees_an_order_once_it_is_paid_and_never_one_whose_payment_lapsed(stack):
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=stack.merchant_md, timeout=20)
    for _ in range(100):
        if stack.service.events.stores.open:
            break
        await asyncio.sleep(0.02)
    lapsing = await place(stack, "gus", CAKE)  # waits for 500 fen, never paid
    paid = await place_paid_in_part(stack, "hal")
    stack.clock.advance(15 * 60 + 1)
    await stack.service.sweep()  # the unpaid one lapses: cancelled, card back
    assert (await stack.order.GetOrder(svc.GetOrderRequest(order_id=lapsing.order_id, user_id="gus"), metadata=stack.md)).order.status == S.ORDER_STATUS_CANCELLED
    sentinel = await place(stack, "ida")
    got = []
    while not got or got[-1].order_id != sentinel.order_id:
        got.append((await feed.read()).order)
    feed.cancel()
    # Once each: a part-paid order's card confirmed after its payment is no second ticket.
    assert [(o.order_id, o.status) for o in got] == [(paid.order_id, S.ORDER_STATUS_PAID), (sentinel.order_id, S.ORDER_STATUS_PAID)]
