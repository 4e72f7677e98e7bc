"""The order service's Quote cache against the real catalog's change feed (real servers, port 0):
repeated orders stop costing a Quote RPC, and every catalog change is seen by the next order
once its announcement has arrived."""
from __future__ import annotations

import asyncio
from dataclasses import replace

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat_svc, catalog_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2 as svc, order_service_pb2_grpc
from services.catalog.wiring import build as build_catalog
from services.common.errors import error_details
from services.order.handlers import OrderConfig
from services.order.payment import SandboxPaymentProvider
from services.order.quote_cache import QuoteCache
from services.order.wiring import build as build_order

# The seed of conftest.py (importlib mode cannot import conftest as a module).
STORE, OTHER_STORE = "it-store-1", "it-store-2"
LATTE, TEA = "it-latte", "it-tea"
S = order_pb2


def line(item=LATTE, qty=1):
    return catalog_pb2.LineSelection(item_id=item, quantity=qty)


def place_req(rid, user="quinn", lines=None, store=STORE):
    return svc.PlaceOrderRequest(
        request_id=rid, user_id=user, store_id=store, lines=lines or [line()], card_use=S.CARD_USE_NONE, campaign_id="it-one"
    )


def cache_of(stack) -> QuoteCache:
    cache = stack.service.catalog
    assert isinstance(cache, QuoteCache), "the order service runs without its quote cache"
    return cache


async def caught_up(stack, timeout: float = 5.0) -> None:
    """Bounded wait until the order's cache has heard every change the catalog made so far."""
    cache, changes = cache_of(stack), stack.catalog_server.catalog.changes
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (cache.live and cache.epoch == changes.epoch and cache.version >= changes.version):
        assert loop.time() < deadline, (cache.live, cache.epoch, cache.version, changes.epoch, changes.version)
        await asyncio.sleep(0.005)


def quote_rpcs(stack) -> int:
    return stack.order_server.upstream_calls[1]["Quote"]


async def set_price(stack, item: str, price: int, rid: str) -> None:
    await stack.catalog.UpsertMenuItem(
        cat_svc.UpsertMenuItemRequest(
            request_id=rid,
            item=catalog_pb2.MenuItem(item_id=item, brand_id="it-brand", name="测试" + item, category="茶饮", price_fen=price),
        ),
        metadata=stack.admin_md,
    )


async def set_available(stack, item: str, available: bool, rid: str, store: str = STORE) -> None:
    await stack.catalog.SetItemAvailability(
        cat_svc.SetItemAvailabilityRequest(request_id=rid, store_id=store, item_id=item, available=available),
        metadata=stack.merchant_md,
    )


async def rpc_error(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code().name, error_details(info.value)


async def test_repeated_orders_of_the_same_lines_do_not_call_the_catalog_again(stack):
    await caught_up(stack)
    before = quote_rpcs(stack)
    orders = await asyncio.gather(*(stack.order.PlaceOrder(place_req(f"r{i}", f"u{i}"), metadata=stack.md) for i in range(40)))
    assert {o.order.subtotal_fen for o in orders} == {1500}
    # Concurrent first askers may each miss; afterwards it is all hits.
    first_wave = quote_rpcs(stack) - before
    assert 1 <= first_wave <= 40
    for i in range(40, 60):
        await stack.order.PlaceOrder(place_req(f"r{i}", f"u{i}"), metadata=stack.md)
    assert quote_rpcs(stack) - before == first_wave
    assert cache_of(stack).hits >= 20


async def test_a_price_change_is_seen_by_the_next_order_and_cart_once_announced(stack):
    await caught_up(stack)
    first = (await stack.order.PlaceOrder(place_req("p1"), metadata=stack.md)).order
    cart = (
        await stack.order.AddCartItem(svc.AddCartItemRequest(request_id="c1", user_id="quinn", store_id=STORE, line=line()), metadata=stack.md)
    ).cart
    assert first.subtotal_fen == 1500 and cart.total_fen == 1500
    await set_price(stack, LATTE, 1900, "price-up")
    await caught_up(stack)
    second = (await stack.order.PlaceOrder(place_req("p2"), metadata=stack.md)).order
    assert second.subtotal_fen == 1900 and second.lines[0].unit_price_fen == 1900
    assert (await stack.order.GetCart(svc.GetCartRequest(user_id="quinn"), metadata=stack.md)).cart.total_fen == 1900
    rpcs = quote_rpcs(stack)
    assert (await stack.order.PlaceOrder(place_req("p3"), metadata=stack.md)).order.subtotal_fen == 1900
    assert quote_rpcs(stack) == rpcs  # the new answer is kept in turn


async def test_a_sold_out_item_is_refused_by_the_next_order_once_announced_and_only_at_that_store(stack):
    await caught_up(stack)
    for store in (STORE, OTHER_STORE):
        await stack.order.PlaceOrder(place_req(f"w-{store}", lines=[line(TEA)], store=store), metadata=stack.md)
    await set_available(stack, TEA, False, "sold-out")
    await caught_up(stack)
    code, info = await rpc_error(stack.order.PlaceOrder(place_req("s1", lines=[line(TEA)]), metadata=stack.md))
    assert (code, info["reason"]) == ("FAILED_PRECONDITION", "ITEM_SOLD_OUT")
    rpcs = quote_rpcs(stack)
    other = (await stack.order.PlaceOrder(place_req("s2", lines=[line(TEA)], store=OTHER_STORE), metadata=stack.md)).order
    assert other.subtotal_fen == 800 and quote_rpcs(stack) == rpcs  # the other store's answer is still good
    await set_available(stack, TEA, True, "back")
    await caught_up(stack)
    assert (await stack.order.PlaceOrder(place_req("s3", lines=[line(TEA)]), metadata=stack.md)).order.subtotal_fen == 800


async def test_many_concurrent_orders_around_price_changes_never_use_a_price_older_than_the_announcement(stack):
    await caught_up(stack)
    price = 1500
    for round_ in range(4):
        wave = [stack.order.PlaceOrder(place_req(f"h{round_}-{i}", f"h{i}"), metadata=stack.md) for i in range(25)]
        price += 100
        await set_price(stack, LATTE, price, f"h-price-{round_}")
        await asyncio.gather(*wave)  # raced with the change: either price is right for them
        await caught_up(stack)
        after = await asyncio.gather(
            *(stack.order.PlaceOrder(place_req(f"a{round_}-{i}", f"a{i}"), metadata=stack.md) for i in range(25))
        )
        assert {o.order.subtotal_fen for o in after} == {price}


# --- the feed going away ------------------------------------------------------------------


@pytest.fixture
async def proxied(stack):
    """The order server restarted with its catalog traffic through a proxy the test can cut
    (conftest.py's TcpProxy, reached through the stack's card proxy: importlib mode)."""
    proxy = type(stack.proxy)(stack.catalog_server.port)
    await proxy.start()
    await stack.order_server.stop(0.5)
    settings = replace(
        stack.settings,
        service="order",
        data_dir=stack.tmp / "order-proxied",
        card_addr=f"127.0.0.1:{stack.proxy.port}",
        catalog_addr=f"127.0.0.1:{proxy.port}",
    )
    stack.order_server = await build_order(
        settings, clock=stack.clock, payment_provider=SandboxPaymentProvider(settings.internal_token),
        config=OrderConfig(sweep_interval_seconds=3600, watch_poll_seconds=1.0),
    )
    port = await stack.order_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stack.channels.append(channel)
    stack.order = order_service_pb2_grpc.OrderServiceStub(channel)
    original_catalog = stack.catalog_server
    try:
        yield proxy
    finally:
        await proxy.stop()
        if stack.catalog_server is not original_catalog:
            # A catalog restarted by the test: the stack fixture only knows the first one.
            await stack.catalog_server.stop(0)


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_a_change_made_while_the_feed_is_down_is_never_hidden_by_the_cache(stack, proxied):
    await caught_up(stack)
    cache = cache_of(stack)
    assert (await stack.order.PlaceOrder(place_req("d1"), metadata=stack.md)).order.subtotal_fen == 1500
    proxied.cut()
    await until(lambda: not cache.live)
    assert len(cache) == 0
    await set_price(stack, LATTE, 2200, "while-down")  # the order service cannot hear about it
    proxied.down = False
    # Whether the feed is back yet or not (bypass), the answer is the catalog's current one.
    assert (await stack.order.PlaceOrder(place_req("d2"), metadata=stack.md, timeout=5)).order.subtotal_fen == 2200
    await caught_up(stack)
    assert (await stack.order.PlaceOrder(place_req("d3"), metadata=stack.md)).order.subtotal_fen == 2200


async def test_a_restarted_catalog_is_a_new_epoch_and_nothing_from_before_is_served(stack, proxied):
    await caught_up(stack)
    cache = cache_of(stack)
    await stack.order.PlaceOrder(place_req("e1"), metadata=stack.md)
    old_epoch = cache.epoch
    # Stop the catalog and start another process on the same data (a restart on a new port).
    await stack.catalog_server.stop(0)
    await until(lambda: not cache.live)
    code, _ = await rpc_error(stack.order.PlaceOrder(place_req("e2"), metadata=stack.md, timeout=5))
    assert code == "UNAVAILABLE"
    stack.catalog_server = await build_catalog(
        replace(stack.settings, service="catalog", data_dir=stack.tmp / "catalog"), clock=stack.clock
    )
    proxied.target_port = await stack.catalog_server.start()
    channel = grpc.aio.insecure_channel(stack.catalog_addr)
    stack.channels.append(channel)
    stack.catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
    await caught_up(stack, timeout=10)
    assert cache.epoch != old_epoch and len(cache) == 0
    await set_price(stack, LATTE, 1600, "after-restart")
    await caught_up(stack)
    assert (await stack.order.PlaceOrder(place_req("e3"), metadata=stack.md)).order.subtotal_fen == 1600
