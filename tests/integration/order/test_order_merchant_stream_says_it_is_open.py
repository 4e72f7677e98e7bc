"""A store stream tells the merchant when it is open, so "open it, then list" loses no order.

A merchant's system (a kitchen display starting, or reconnecting after WATCH_LAGGING or a
dropped connection) opens WatchStoreOrders, then lists the store for what came before. The
stream sent nothing, not even its headers, until the store's next change: the client could not
tell when the order service had started following the store, and an order paid after the list
was read but before the stream followed the store was on neither, a paid order no kitchen made.
The stream now answers its headers as soon as it follows the store: a client that waits for
them (`initial_metadata()`) before listing gets every order, on the list or on the stream."""
from __future__ import annotations

import asyncio

from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.merchant_grant import mint_grant
from tests.integration.order.merchant_calls import BRAND, OTHER_STORE, STORE, place, refused

# A bound on each wait, not a measure: the headers come at once, or never without the fix.
PATIENCE_S = 10


async def listed(stack, md, store=STORE):
    request = svc.ListStoreOrdersRequest(store_id=store, status=S.ORDER_STATUS_PAID)
    return [o.order_id for o in (await stack.order.ListStoreOrders(request, metadata=md, timeout=5)).orders]


async def test_a_store_stream_answers_its_headers_before_any_order_so_the_merchant_lists_then(stack):
    before = await place(stack, "amy")
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=stack.merchant_md, timeout=30)
    try:
        await asyncio.wait_for(feed.initial_metadata(), PATIENCE_S)  # the cue: it follows the store now
        assert await listed(stack, stack.merchant_md) == [before.order_id]
        after = await place(stack, "ben")
        got = await asyncio.wait_for(feed.read(), PATIENCE_S)
        assert got.order.order_id == after.order_id
    finally:
        feed.cancel()


async def test_a_grant_refused_a_rival_store_gets_no_headers_only_the_refusal(stack):
    await place(stack, "cat", OTHER_STORE)
    grant = mint_grant(stack.settings.merchant_signing_key, "rival", brands=["another-brand"], clock=stack.clock)
    md = ((MERCHANT_TOKEN_KEY, grant),)
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=OTHER_STORE), metadata=md, timeout=30)
    assert await refused(feed.read()) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    own = mint_grant(stack.settings.merchant_signing_key, "hq", brands=[BRAND], clock=stack.clock)
    mine = stack.order.WatchStoreOrders(
        svc.WatchStoreOrdersRequest(store_id=OTHER_STORE), metadata=((MERCHANT_TOKEN_KEY, own),), timeout=30
    )
    try:
        await asyncio.wait_for(mine.initial_metadata(), PATIENCE_S)
    finally:
        mine.cancel()
