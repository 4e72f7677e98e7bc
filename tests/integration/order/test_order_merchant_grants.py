"""A merchant with a grant moves and cancels the orders of its own stores only; to it, any other
store's order is missing, as another user's order is to a user."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.order.merchant_calls import BRAND, CAMPAIGN, OTHER_STORE, STORE, place, refused, status


def as_merchant(stack, **scope):
    grant = mint_grant(stack.settings.merchant_signing_key, "m-1", clock=stack.clock, **scope)
    return ((INTERNAL_TOKEN_KEY, stack.settings.internal_token), (MERCHANT_TOKEN_KEY, grant))


def accept(stack, order, md, request_id="acc"):
    return stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id=request_id, order_id=order.order_id, status=S.ORDER_STATUS_ACCEPTED), metadata=md
    )


async def test_a_store_grant_moves_that_stores_orders_and_finds_no_other(stack):
    mine, theirs = await place(stack, "amy", STORE), await place(stack, "ben", OTHER_STORE)
    md = as_merchant(stack, stores=[STORE])
    assert (await accept(stack, mine, md)).order.status == S.ORDER_STATUS_ACCEPTED
    assert await refused(accept(stack, theirs, md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    cancel = svc.CancelOrderRequest(request_id="c", order_id=theirs.order_id, reason="rival")
    assert await refused(stack.order.CancelOrder(cancel, metadata=md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    assert await status(stack, theirs, "ben") == S.ORDER_STATUS_PAID  # untouched


async def test_a_brand_grant_covers_every_store_of_the_brand(stack):
    a, b = await place(stack, "cat", STORE), await place(stack, "dan", OTHER_STORE)
    md = as_merchant(stack, brands=[BRAND])
    assert (await accept(stack, a, md)).order.status == S.ORDER_STATUS_ACCEPTED
    cancelled = await stack.order.CancelOrder(svc.CancelOrderRequest(request_id="c", order_id=b.order_id, reason="打烊"), metadata=md)
    assert cancelled.order.status == S.ORDER_STATUS_CANCELLED
    rival = as_merchant(stack, brands=["rival-brand"])
    assert await refused(accept(stack, a, rival, "acc2")) == ("NOT_FOUND", "ORDER_NOT_FOUND")


async def test_the_platform_merchant_token_still_acts_on_every_order(stack):
    o = await place(stack, "eve", OTHER_STORE)
    assert (await accept(stack, o, stack.merchant_md)).order.status == S.ORDER_STATUS_ACCEPTED


def list_store(stack, store, md, **fields):
    return stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=store, **fields), metadata=md)


async def test_a_merchant_lists_its_stores_queue_newest_first_page_by_page(stack):
    mine = []
    for n in range(5):
        mine.append(await place(stack, f"q{n}", STORE))
        stack.clock.advance(1)
    other = await place(stack, "elsewhere", OTHER_STORE)
    md = as_merchant(stack, stores=[STORE])
    first = await list_store(stack, STORE, md, page_size=2)
    second = await list_store(stack, STORE, md, page_size=2, page_token=first.next_page_token)
    third = await list_store(stack, STORE, md, page_size=2, page_token=second.next_page_token)
    listed = [o.order_id for page in (first, second, third) for o in page.orders]
    assert listed == [o.order_id for o in reversed(mine)] and not third.next_page_token
    assert other.order_id not in listed
    # The queue by status: what is still to accept.
    await accept(stack, mine[0], md)
    to_accept = await list_store(stack, STORE, md, status=S.ORDER_STATUS_PAID)
    assert [o.order_id for o in to_accept.orders] == [o.order_id for o in reversed(mine[1:])]
    accepted = await list_store(stack, STORE, md, status=S.ORDER_STATUS_ACCEPTED)
    assert [o.order_id for o in accepted.orders] == [mine[0].order_id]


async def test_a_store_list_is_fenced_like_the_orders_in_it(stack):
    await place(stack, "fa", STORE)
    await place(stack, "fb", OTHER_STORE)
    store_grant, brand_grant, rival = as_merchant(stack, stores=[STORE]), as_merchant(stack, brands=[BRAND]), as_merchant(stack, brands=["rival-brand"])
    assert await refused(list_store(stack, OTHER_STORE, store_grant)) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    assert await refused(list_store(stack, STORE, rival)) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    assert len((await list_store(stack, OTHER_STORE, brand_grant)).orders) == 1
    assert len((await list_store(stack, OTHER_STORE, stack.merchant_md)).orders) == 1  # the platform token
    assert await refused(list_store(stack, "no-such-store", rival)) == ("NOT_FOUND", "STORE_NOT_FOUND")
    assert await refused(list_store(stack, STORE, stack.md)) == ("PERMISSION_DENIED", "MERCHANT_REQUIRED")


async def test_bad_store_list_requests_are_invalid_argument(stack):
    md = stack.merchant_md
    assert await refused(list_store(stack, "", md)) == ("INVALID_ARGUMENT", "FIELD_REQUIRED")
    assert await refused(list_store(stack, STORE, md, status=99)) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
    assert await refused(list_store(stack, STORE, md, page_token="bm9wZQ==")) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")
    assert await refused(list_store(stack, STORE, md, page_size=-1)) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT")


async def next_order(call, timeout=5.0):
    return (await asyncio.wait_for(call.read(), timeout)).order


async def test_a_merchant_watches_its_store_get_orders_and_no_other_stores(stack):
    await place(stack, "seed", STORE)  # the store has orders: a foreign grant is refused at once
    md = as_merchant(stack, stores=[STORE])
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=20)
    await asyncio.sleep(0.2)  # the stream is open before the orders come
    elsewhere = await place(stack, "walker", OTHER_STORE)
    new = await place(stack, "hungry", STORE)
    got = await next_order(feed)
    assert (got.order_id, got.status) == (new.order_id, S.ORDER_STATUS_PAID)
    await accept(stack, new, md)
    assert (await next_order(feed)).status == S.ORDER_STATUS_ACCEPTED
    await stack.order.CancelOrder(svc.CancelOrderRequest(request_id="c", order_id=new.order_id, user_id="hungry", reason="changed"), metadata=stack.md)
    assert (await next_order(feed)).status == S.ORDER_STATUS_CANCELLED
    feed.cancel()
    assert elsewhere.store_id == OTHER_STORE
    rival = as_merchant(stack, brands=["rival-brand"])
    call = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=rival, timeout=5)
    assert await refused(call.read()) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")


async def test_a_store_without_orders_yet_is_its_brands_and_refused_to_every_other_brand(stack):
    # Before, a store without orders could not be placed: a rival brand's grant got an empty
    # list and an open stream there, and STORE_NOT_YOURS only once the store had taken an
    # order, so its answers told which rival stores had orders. The catalog now says whose
    # the store is.
    rival = as_merchant(stack, brands=["rival-brand"])
    assert await refused(list_store(stack, OTHER_STORE, rival)) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    theirs = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=OTHER_STORE), metadata=rival, timeout=5)
    assert await refused(theirs.read()) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")
    brand_grant = as_merchant(stack, brands=[BRAND])
    assert not (await list_store(stack, OTHER_STORE, brand_grant)).orders
    mine = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=OTHER_STORE), metadata=brand_grant, timeout=20)
    await asyncio.sleep(0.2)
    o = await place(stack, "first", OTHER_STORE)
    assert (await next_order(mine)).order_id == o.order_id
    mine.cancel()
    # And once it has orders, the rival is refused exactly as before it had any.
    assert await refused(list_store(stack, OTHER_STORE, rival)) == ("PERMISSION_DENIED", "STORE_NOT_YOURS")


@pytest.mark.parametrize("how", ["expired", "revoked"])
async def test_a_store_stream_ends_once_its_grant_expires_or_is_revoked(stack, how, tmp_path):
    await place(stack, "seed2", STORE)
    grant = mint_grant(stack.settings.merchant_signing_key, "m-leaky", stores=[STORE], ttl=60, clock=stack.clock)
    md = ((INTERNAL_TOKEN_KEY, stack.settings.internal_token), (MERCHANT_TOKEN_KEY, grant))
    feed = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=STORE), metadata=md, timeout=20)
    await asyncio.sleep(0.2)
    first = await place(stack, "before", STORE)
    assert (await next_order(feed)).order_id == first.order_id
    if how == "expired":
        stack.clock.advance(60 + 31)  # past exp and the leeway
    else:
        revoked = tmp_path / "revoked"
        revoked.write_text("m-leaky\n")
        policy = stack.order_server.policy
        policy._revoked.path = revoked  # as if started with MIANDAN_MERCHANT_REVOKED_FILE
        policy._revoked.check_s = 0
    await place(stack, "after", STORE)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await next_order(feed)
    assert (err.value.code(), error_details(err.value)["reason"]) == (grpc.StatusCode.UNAUTHENTICATED, "MERCHANT_GRANT_INVALID")


async def test_a_store_moved_to_another_brand_lists_each_brands_orders_to_that_brand_only(stack):
    # ImportStores may give a store_id to another brand (a franchise changing chains). The new
    # brand's grant listed the old brand's orders (its buyers, its takings) though every one of
    # them was ORDER_NOT_FOUND to it, and the old brand was refused the list of orders it may
    # still move along.
    from miandan.catalog.v1 import catalog_service_pb2 as cat_svc
    from miandan.common.v1 import common_pb2

    admin = stack.admin_md
    await stack.catalog.UpsertBrand(cat_svc.UpsertBrandRequest(
        request_id="brand-new", brand=catalog_pb2.Brand(brand_id="new-brand", name="新茶饮", category="茶饮")), metadata=admin)
    await stack.catalog.UpsertMenuItem(cat_svc.UpsertMenuItemRequest(
        request_id="item-new", item=catalog_pb2.MenuItem(item_id="new-tea", brand_id="new-brand", name="新奶茶", price_fen=900)),
        metadata=admin)
    old = await place(stack, "before-move", STORE)

    async def moved():
        yield cat_svc.ImportStoresRequest(stores=[catalog_pb2.Store(
            store_id=STORE, brand_id="new-brand", name="新茶饮(店)", location=common_pb2.GeoPoint(latitude=30.27, longitude=120.15))])

    assert (await stack.catalog.ImportStores(moved(), metadata=admin)).accepted == 1
    stack.clock.advance(1)  # newest first: the new brand's order is the newer
    await stack.signup("after-move")
    request = svc.PlaceOrderRequest(
        request_id="after-1", user_id="after-move", store_id=STORE, campaign_id=CAMPAIGN,
        lines=[catalog_pb2.LineSelection(item_id="new-tea", quantity=1)], card_use=S.CARD_USE_BEST,
    )
    for _ in range(50):  # the order service's quote cache hears of the move within moments
        try:
            new = (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=5)).order
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    assert new.brand_id == "new-brand" and old.brand_id == BRAND
    new_grant, old_grant = as_merchant(stack, brands=["new-brand"]), as_merchant(stack, brands=[BRAND])
    assert [o.order_id for o in (await list_store(stack, STORE, new_grant)).orders] == [new.order_id]
    assert [o.order_id for o in (await list_store(stack, STORE, old_grant)).orders] == [old.order_id]
    assert (await accept(stack, old, old_grant)).order.status == S.ORDER_STATUS_ACCEPTED
    # The store's own grant and the platform see the store's whole queue.
    for md in (as_merchant(stack, stores=[STORE]), stack.merchant_md):
        assert [o.order_id for o in (await list_store(stack, STORE, md)).orders] == [new.order_id, old.order_id]
