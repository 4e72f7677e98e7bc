"""A merchant's systems, holding only their grant, get 20 calls a second with bursts of 100 (the
defaults) over all the order service's merchant RPCs together; beyond that RESOURCE_EXHAUSTED
MERCHANT_RATE_LIMITED with the wait in RetryInfo, and nothing of the refused call is done. A
WatchStoreOrders stream counts once, when it opens, not per change it carries. Other merchants,
the platform's merchant token and the platform's own calls are not held back by it."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from tests.integration.order.merchant_calls import BRAND, STORE, grant_only, place, refused, status

BURST = 100  # Settings.merchant_burst's default
INTERVAL_MS = 50  # 1 / Settings.merchant_rate's default


async def paced(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    details = error_details(err.value)
    assert (err.value.code(), details["reason"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "MERCHANT_RATE_LIMITED"), details
    return details["retry_after_ms"]


def update(stack, order, md, to, request_id):
    return stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id=request_id, order_id=order.order_id, status=to), metadata=md
    )


async def test_a_grant_beyond_its_merchants_pace_is_refused_with_the_wait_and_changes_nothing(stack):
    first = await place(stack, "amy", STORE)
    md = grant_only(stack, stores=[STORE])
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=30)
    await asyncio.sleep(0.2)  # open: one call of the burst
    assert (await update(stack, first, md, S.ORDER_STATUS_ACCEPTED, "acc")).order.status == S.ORDER_STATUS_ACCEPTED
    listing = svc.ListStoreOrdersRequest(store_id=STORE)
    for _ in range(BURST - 2):
        await stack.order.ListStoreOrders(listing, metadata=md)
    # The stream goes on carrying the store's changes: they are not calls.
    second = await place(stack, "bob", STORE)
    carried = [(await asyncio.wait_for(feed.read(), 5)).order for _ in range(2)]
    assert [(o.order_id, o.status) for o in carried] == [
        (first.order_id, S.ORDER_STATUS_ACCEPTED), (second.order_id, S.ORDER_STATUS_PAID),
    ]

    assert await paced(update(stack, first, md, S.ORDER_STATUS_PREPARING, "prep")) == INTERVAL_MS
    cancel = svc.CancelOrderRequest(request_id="c", order_id=second.order_id, reason="售罄")
    assert await paced(stack.order.CancelOrder(cancel, metadata=md)) == INTERVAL_MS
    assert await paced(stack.order.ListStoreOrders(listing, metadata=md)) == INTERVAL_MS
    another = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=5)
    assert await paced(another.read()) == INTERVAL_MS
    assert await status(stack, first, "amy") == S.ORDER_STATUS_ACCEPTED
    assert await status(stack, second, "bob") == S.ORDER_STATUS_PAID

    # A new grant of the same merchant shares its pace; one interval later, one call goes through.
    assert await paced(stack.order.ListStoreOrders(listing, metadata=grant_only(stack, brands=[BRAND]))) == INTERVAL_MS
    stack.clock.advance(INTERVAL_MS / 1000)
    assert (await update(stack, first, md, S.ORDER_STATUS_PREPARING, "prep")).order.status == S.ORDER_STATUS_PREPARING
    assert await paced(stack.order.CancelOrder(cancel, metadata=md)) == INTERVAL_MS
    feed.cancel()


async def test_other_merchants_and_the_platform_are_not_held_back_by_one_merchants_flood(stack):
    order = await place(stack, "cat", STORE)
    flood = grant_only(stack, "m-flood", stores=[STORE])
    listing = svc.ListStoreOrdersRequest(store_id=STORE)
    # At most 16 in flight: the flood's pace is under test, not the server's admission, which on a
    # slow machine may shed calls of a 120-call tick after the pace has counted them.
    in_flight = asyncio.Semaphore(16)

    async def call():
        async with in_flight:
            return await stack.order.ListStoreOrders(listing, metadata=flood)

    answers = await asyncio.gather(*(call() for _ in range(BURST + 20)), return_exceptions=True)
    assert sum(not isinstance(a, Exception) for a in answers) == BURST
    assert {error_details(a)["reason"] for a in answers if isinstance(a, Exception)} == {"MERCHANT_RATE_LIMITED"}

    other = grant_only(stack, "m-other", brands=[BRAND])
    assert [o.order_id for o in (await stack.order.ListStoreOrders(listing, metadata=other)).orders] == [order.order_id]
    platform = ((MERCHANT_TOKEN_KEY, stack.settings.merchant_token),)
    for _ in range(BURST + 20):
        await stack.order.ListStoreOrders(listing, metadata=platform)
    moved = await update(stack, order, platform, S.ORDER_STATUS_ACCEPTED, "p-acc")
    assert moved.order.status == S.ORDER_STATUS_ACCEPTED
    # The gateway's calls for buyers carry no grant.
    assert await status(stack, order, "cat") == S.ORDER_STATUS_ACCEPTED
    assert await refused(stack.order.ListStoreOrders(listing, metadata=flood)) == ("RESOURCE_EXHAUSTED", "MERCHANT_RATE_LIMITED")
