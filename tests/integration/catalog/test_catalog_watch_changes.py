"""WatchMenuChanges and the stamp on Quote over real gRPC and SQLite."""
import asyncio

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc

from tests.integration.catalog.conftest import store_pb

pytestmark = pytest.mark.timeout(30)


async def seeded(start_catalog):
    cat = await start_catalog()
    await cat.stub.UpsertBrand(svc.UpsertBrandRequest(request_id="b", brand=catalog_pb2.Brand(brand_id="w", name="观察茶")), metadata=cat.admin)
    await cat.stub.UpsertMenuItem(
        svc.UpsertMenuItemRequest(request_id="i", item=catalog_pb2.MenuItem(item_id="tea", brand_id="w", name="奶茶", price_fen=800)),
        metadata=cat.admin,
    )

    async def rows():
        yield svc.ImportStoresRequest(stores=[
            store_pb("w1", "w", 30.27, 120.15, hours=[(3, 7 * 60, 22 * 60)]),
            store_pb("w2", "w", 30.28, 120.16),
        ])

    assert (await cat.stub.ImportStores(rows(), metadata=cat.admin)).accepted == 2
    return cat


def quote_req(store="w1"):
    return svc.QuoteRequest(store_id=store, lines=[catalog_pb2.LineSelection(item_id="tea", quantity=1)])


async def test_the_feed_says_hello_then_announces_each_committed_change_with_a_growing_version(start_catalog):
    cat = await seeded(start_catalog)
    call = cat.stub.WatchMenuChanges(svc.WatchMenuChangesRequest(subscriber="test"), metadata=cat.md)
    try:
        hello = await asyncio.wait_for(call.read(), 5)
        assert hello.hello and hello.epoch and hello.version == cat.server.catalog.changes.version
        before = await cat.stub.Quote(quote_req(), metadata=cat.md)
        assert (before.epoch, before.menu_version) == (hello.epoch, hello.version)
        await cat.stub.SetItemAvailability(
            svc.SetItemAvailabilityRequest(request_id="a", store_id="w1", item_id="tea", available=False), metadata=cat.merchant
        )
        change = await asyncio.wait_for(call.read(), 5)
        assert list(change.store_ids) == ["w1"] and not change.all_stores and change.version > hello.version
        await cat.stub.UpsertMenuItem(
            svc.UpsertMenuItemRequest(request_id="p", item=catalog_pb2.MenuItem(item_id="tea", brand_id="w", name="奶茶", price_fen=900)),
            metadata=cat.admin,
        )
        price = await asyncio.wait_for(call.read(), 5)
        assert price.all_stores and price.version > change.version and price.epoch == hello.epoch
        after = await cat.stub.Quote(quote_req(), metadata=cat.md)
        assert after.menu_version == price.version and after.problems[0].reason == "ITEM_SOLD_OUT"
        assert (await cat.stub.Quote(quote_req("w2"), metadata=cat.md)).quote.total_fen == 900
    finally:
        call.cancel()


async def test_a_quote_says_until_when_the_clock_cannot_change_it(start_catalog):
    cat = await seeded(start_catalog)  # the clock: Wednesday 20:00 in Shanghai
    timed = await cat.stub.Quote(quote_req("w1"), metadata=cat.md)
    assert timed.HasField("valid_until_time")
    assert timed.valid_until_time.ToDatetime().strftime("%Y-%m-%d %H:%M") == "2026-01-28 14:00"  # 22:00 local
    assert not (await cat.stub.Quote(quote_req("w2"), metadata=cat.md)).HasField("valid_until_time")


async def test_the_feed_needs_the_internal_credential(start_catalog):
    cat = await start_catalog()
    call = cat.stub.WatchMenuChanges(svc.WatchMenuChangesRequest(), metadata=())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(call.read(), 5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_many_subscribers_each_see_every_change_of_a_burst_of_writes(start_catalog):
    cat = await seeded(start_catalog)
    calls = [cat.stub.WatchMenuChanges(svc.WatchMenuChangesRequest(), metadata=cat.md) for _ in range(5)]
    try:
        hellos = [await asyncio.wait_for(c.read(), 5) for c in calls]
        await asyncio.gather(*(
            cat.stub.SetItemAvailability(
                svc.SetItemAvailabilityRequest(request_id=f"r{i}", store_id=("w1", "w2")[i % 2], item_id="tea", available=bool(i % 3)),
                metadata=cat.merchant,
            )
            for i in range(60)
        ))
        final = cat.server.catalog.changes.version
        for call, hello in zip(calls, hellos):
            seen, version = set(), hello.version
            while version < final:
                m = await asyncio.wait_for(call.read(), 5)
                assert m.version >= version
                version = m.version
                seen.update(m.store_ids)
            assert seen == {"w1", "w2"}
    finally:
        for c in calls:
            c.cancel()
