"""A merchant grant sees what to make, for how much and where an order stands, never who the
buyer is on the platform: its systems are outside the platform, at 300,000 stores. Before, every
order a grant listed, watched, moved or cancelled carried the buyer's account id (the same at
every store), the buyer's card and request ids, and the payment's ids and reference."""
from __future__ import annotations

import asyncio

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.merchant_grant import mint_grant

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN, STORE, CAKE = "it-one", "it-store-1", "it-cake"  # 3000 fen: a card of 2500 and 500 in money


def grant_only(stack):
    return ((MERCHANT_TOKEN_KEY, mint_grant(stack.settings.merchant_signing_key, "m-privacy", stores=[STORE], clock=stack.clock)),)


async def place_and_pay(stack, user):
    await stack.signup(user)
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-1", user_id=user, store_id=STORE, campaign_id=CAMPAIGN,
        lines=[catalog_pb2.LineSelection(item_id=CAKE, quantity=1)], card_use=S.CARD_USE_BEST,
    )
    order = (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=5)).order
    pay = svc.ConfirmPaymentRequest(
        request_id="pay", order_id=order.order_id, user_id=user, payment_reference=order.payment.payment_reference
    )
    paid = (await stack.order.ConfirmPayment(pay, metadata=stack.md, timeout=5)).order
    assert paid.user_id and paid.card_id and paid.payment.payment_id and paid.payment.payment_reference
    return paid


def buyer_ids(order):
    return order.user_id, order.request_id, order.card_id, order.payment.payment_id, order.payment.payment_reference


def as_a_merchant_sees_it(order):
    assert buyer_ids(order) == ("", "", "", "", ""), order
    # What the kitchen and the till need is all there.
    assert order.order_id and order.lines and order.subtotal_fen == 3000
    assert order.card_discount_fen == 2500 and order.payable_fen == 500 and order.payment.amount_fen == 500
    assert order.campaign_id == CAMPAIGN and order.history


async def test_a_grant_lists_watches_moves_and_cancels_orders_without_the_buyers_ids(stack):
    md = grant_only(stack)
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=20)
    await asyncio.sleep(0.2)  # the stream is open before the order comes
    first = await place_and_pay(stack, "pia")
    streamed = (await asyncio.wait_for(feed.read(), 5)).order
    assert streamed.order_id == first.order_id
    as_a_merchant_sees_it(streamed)
    feed.cancel()
    second = await place_and_pay(stack, "quin")
    listed = await stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=STORE), metadata=md)
    assert [o.order_id for o in listed.orders] == [second.order_id, first.order_id]
    for order in listed.orders:
        as_a_merchant_sees_it(order)
    moved = await stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id="acc", order_id=first.order_id, status=S.ORDER_STATUS_ACCEPTED), metadata=md
    )
    as_a_merchant_sees_it(moved.order)
    cancelled = await stack.order.CancelOrder(svc.CancelOrderRequest(request_id="c", order_id=second.order_id, reason="售罄"), metadata=md)
    assert cancelled.order.status == S.ORDER_STATUS_CANCELLED
    as_a_merchant_sees_it(cancelled.order)


async def test_the_platform_and_the_buyer_still_see_the_whole_order(stack):
    order = await place_and_pay(stack, "ravi")
    platform = ((MERCHANT_TOKEN_KEY, stack.settings.merchant_token),)
    listed = await stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=STORE), metadata=platform)
    assert buyer_ids(listed.orders[0]) == buyer_ids(order)
    mine = await stack.order.GetOrder(svc.GetOrderRequest(order_id=order.order_id, user_id="ravi"), metadata=stack.md)
    assert buyer_ids(mine.order) == buyer_ids(order)
