"""A merchant's systems carry their own credential only, never the internal token: with it they
move, watch, list and cancel their stores' orders, and nothing else (no internal RPC, no
cancelling on a buyer's behalf, no choosing their calls' criticality)."""
from __future__ import annotations

import asyncio

from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.merchant_grant import mint_grant
from tests.integration.order.merchant_calls import OTHER_STORE, STORE, grant_only, place, refused, status


def move(stack, order, md, to=S.ORDER_STATUS_ACCEPTED, request_id="acc"):
    return stack.order.UpdateOrderStatus(svc.UpdateOrderStatusRequest(request_id=request_id, order_id=order.order_id, status=to), metadata=md)


async def test_a_grant_alone_moves_lists_watches_and_cancels_its_stores_orders(stack):
    first = await place(stack, "amy", STORE)
    md = grant_only(stack, stores=[STORE])
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=20)
    await asyncio.sleep(0.2)  # the stream is open before the next order comes
    second = await place(stack, "bob", STORE)
    assert (await asyncio.wait_for(feed.read(), 5)).order.order_id == second.order_id
    feed.cancel()
    listed = await stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=STORE), metadata=md)
    assert [o.order_id for o in listed.orders] == [second.order_id, first.order_id]
    assert (await move(stack, first, md)).order.status == S.ORDER_STATUS_ACCEPTED
    cancel = svc.CancelOrderRequest(request_id="c", order_id=second.order_id, reason="售罄")
    assert (await stack.order.CancelOrder(cancel, metadata=md)).order.status == S.ORDER_STATUS_CANCELLED
    assert await status(stack, second, "bob") == S.ORDER_STATUS_CANCELLED


async def test_the_platform_merchant_token_alone_acts_on_every_store(stack):
    order = await place(stack, "cat", OTHER_STORE)
    md = ((MERCHANT_TOKEN_KEY, stack.settings.merchant_token),)
    assert (await move(stack, order, md)).order.status == S.ORDER_STATUS_ACCEPTED


async def test_a_grant_alone_still_finds_no_other_stores_order(stack):
    theirs = await place(stack, "dan", OTHER_STORE)
    md = grant_only(stack, stores=[STORE])
    assert await refused(move(stack, theirs, md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    cancel = svc.CancelOrderRequest(request_id="c", order_id=theirs.order_id, reason="rival")
    assert await refused(stack.order.CancelOrder(cancel, metadata=md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    listing = stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=OTHER_STORE), metadata=md)
    assert await refused(listing) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    assert await status(stack, theirs, "dan") == S.ORDER_STATUS_PAID


async def test_a_merchant_cannot_cancel_on_a_buyers_behalf(stack):
    """The hole this closes: the user's path trusts user_id, so a merchant holding the internal
    token cancelled any store's order knowing its id and buyer. Without the token it cannot."""
    theirs = await place(stack, "eve", OTHER_STORE)
    for md in (grant_only(stack, stores=[STORE]), ((MERCHANT_TOKEN_KEY, stack.settings.merchant_token),)):
        cancel = svc.CancelOrderRequest(request_id="c", order_id=theirs.order_id, user_id="eve", reason="rival")
        assert await refused(stack.order.CancelOrder(cancel, metadata=md)) == ("PERMISSION_DENIED", "MERCHANT_CANNOT_ACT_AS_USER")
    assert await status(stack, theirs, "eve") == S.ORDER_STATUS_PAID
    # The gateway's path (internal credential) is the user's, as before.
    cancel = svc.CancelOrderRequest(request_id="u", order_id=theirs.order_id, user_id="eve", reason="changed my mind")
    assert (await stack.order.CancelOrder(cancel, metadata=stack.md)).order.status == S.ORDER_STATUS_CANCELLED


async def test_a_grant_alone_opens_no_internal_rpc(stack):
    order = await place(stack, "fay", STORE)
    md = grant_only(stack, stores=[STORE])
    calls = [
        stack.order.GetOrder(svc.GetOrderRequest(order_id=order.order_id, user_id="fay"), metadata=md),
        stack.order.ListOrders(svc.ListOrdersRequest(user_id="fay"), metadata=md),
        stack.order.ConfirmPayment(svc.ConfirmPaymentRequest(order_id=order.order_id, user_id="fay"), metadata=md),
        stack.order.ListAllOrders(svc.ListAllOrdersRequest(), metadata=md),
    ]
    for call in calls:
        assert await refused(call) == ("UNAUTHENTICATED", "CREDENTIAL_MISSING")


async def test_a_bad_grant_or_a_wrong_internal_token_beside_a_good_grant_is_refused(stack):
    order = await place(stack, "gus", STORE)
    assert await refused(move(stack, order, ((MERCHANT_TOKEN_KEY, "guess"),))) == ("UNAUTHENTICATED", "CREDENTIAL_INVALID")
    forged = ((MERCHANT_TOKEN_KEY, mint_grant("x" * 40, "m-1", stores=[STORE], clock=stack.clock)),)
    assert await refused(move(stack, order, forged)) == ("UNAUTHENTICATED", "MERCHANT_GRANT_INVALID")
    wrong_internal = ((INTERNAL_TOKEN_KEY, "not-the-token"),) + grant_only(stack, stores=[STORE])
    assert await refused(move(stack, order, wrong_internal)) == ("UNAUTHENTICATED", "CREDENTIAL_INVALID")
    assert await refused(move(stack, order, ())) == ("UNAUTHENTICATED", "CREDENTIAL_MISSING")
    assert await status(stack, order, "gus") == S.ORDER_STATUS_PAID


async def test_one_merchant_holds_a_bounded_number_of_streams_on_a_store(stack):
    from services.order.handlers import STREAMS_PER_MERCHANT_STORE

    await place(stack, "hal", STORE)
    md = grant_only(stack, stores=[STORE])
    feeds = [stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=20)
             for _ in range(STREAMS_PER_MERCHANT_STORE)]
    await asyncio.sleep(0.3)  # every stream is open
    extra = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=5)
    assert await refused(extra.read()) == ("RESOURCE_EXHAUSTED", "TOO_MANY_WATCHES")
    # The platform still watches the store, and each open stream still gets the next order.
    platform = stack.order.WatchStoreOrders(
        svc.WatchStoreOrdersRequest(store_id=STORE), metadata=((MERCHANT_TOKEN_KEY, stack.settings.merchant_token),), timeout=20
    )
    await asyncio.sleep(0.2)
    new = await place(stack, "ivy", STORE)
    for feed in (*feeds, platform):
        assert (await asyncio.wait_for(feed.read(), 5)).order.order_id == new.order_id
        feed.cancel()
