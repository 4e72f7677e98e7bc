"""A store that an import moves to another brand leaves its sold-out marks behind, in the import's
transaction, in memory and on the change feed (real gRPC and SQLite)."""
import asyncio
import sqlite3

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.catalog.model import validate_store_row
from services.catalog.store import SqliteCatalogStore
from services.common.errors import NotFound, error_details

from tests.integration.catalog.conftest import catalog_settings, store_pb

pytestmark = pytest.mark.timeout(30)
HZ = (30.2741, 120.1551)


async def seeded(start_catalog, **kw):
    """Brands a and b, each with an item of the same id (latte) and one of its own."""
    cat = await start_catalog(**kw)
    for brand in ("a", "b"):
        await cat.stub.UpsertBrand(
            svc.UpsertBrandRequest(request_id=f"b-{brand}", brand=catalog_pb2.Brand(brand_id=brand, name=f"品牌{brand}")), metadata=cat.admin
        )
        for item_id in ("latte", f"{brand}-only"):
            item = catalog_pb2.MenuItem(item_id=item_id, brand_id=brand, name=f"{brand}的{item_id}", price_fen=1200)
            await cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id=f"i-{brand}-{item_id}", item=item), metadata=cat.admin)
    await import_stores(cat, store_pb("s1", "a", *HZ), store_pb("s2", "a", HZ[0] + 0.001, HZ[1]))
    return cat


async def import_stores(cat, *stores):
    async def rows():
        yield svc.ImportStoresRequest(stores=list(stores))

    assert (await cat.stub.ImportStores(rows(), metadata=cat.admin)).accepted == len(stores)


async def sold_out(cat, store_id, item_id, request_id):
    await cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id=request_id, store_id=store_id, item_id=item_id, available=False), metadata=cat.merchant
    )


async def problems(cat, store_id, item_id):
    r = await cat.stub.Quote(
        svc.QuoteRequest(store_id=store_id, lines=[catalog_pb2.LineSelection(item_id=item_id, quantity=1)]), metadata=cat.md
    )
    return [p.reason for p in r.problems]


async def availability(cat, store_id):
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md)
    return {e.item.item_id: e.available for e in menu.entries}


async def test_moving_a_store_to_another_brand_drops_its_sold_out_marks_there_and_on_the_feed(start_catalog, tmp_path):
    cat = await seeded(start_catalog, data_dir=tmp_path)
    await sold_out(cat, "s1", "latte", "so-1")
    await sold_out(cat, "s1", "a-only", "so-2")
    await sold_out(cat, "s2", "latte", "so-3")
    call = cat.stub.WatchMenuChanges(svc.WatchMenuChangesRequest(subscriber="test"), metadata=cat.md)
    try:
        hello = await asyncio.wait_for(call.read(), 5)
        await import_stores(cat, store_pb("s1", "b", *HZ))
        change = await asyncio.wait_for(call.read(), 5)
        assert list(change.store_ids) == ["s1"] and change.version > hello.version
        # Brand b's latte shares the id of the latte a merchant of brand a sold out: it is on sale.
        after = await cat.stub.Quote(
            svc.QuoteRequest(store_id="s1", lines=[catalog_pb2.LineSelection(item_id="latte", quantity=1)]), metadata=cat.md
        )
        assert after.orderable and after.menu_version == change.version
    finally:
        call.cancel()
    assert await availability(cat, "s1") == {"latte": True, "b-only": True}
    assert "s1" not in cat.server.catalog.sold_out
    # A store that stays with its brand keeps its marks.
    await import_stores(cat, store_pb("s2", "a", HZ[0] + 0.001, HZ[1], name="改名"))
    assert await problems(cat, "s2", "latte") == ["ITEM_SOLD_OUT"]
    # Back to brand a: the marks of before the move are gone for good, in the store too.
    await import_stores(cat, store_pb("s1", "a", *HZ))
    assert await availability(cat, "s1") == {"latte": True, "a-only": True}
    await cat.server.stop(0)
    again = await start_catalog(data_dir=tmp_path)
    assert await availability(again, "s1") == {"latte": True, "a-only": True}
    assert await availability(again, "s2") == {"latte": False, "a-only": True}


async def test_marks_are_dropped_in_the_import_transaction_and_a_late_mark_of_the_old_brand_is_refused(tmp_path):
    store = await SqliteCatalogStore.open(catalog_settings(tmp_path).db_path)
    try:
        await store.db.write(_seed)

        def row(store_id, brand_id):
            return validate_store_row(0, store_id, brand_id, store_id, "", "", *HZ, (), False, "", {"a": 1, "b": 1})

        await store.set_availability("", "s1", "a-only", False, 1)
        await store.set_availability("", "s2", "a-only", False, 1)
        dropped = await store.upsert_stores([row("s1", "b"), row("s2", "a"), row("s3", "b")], 2)
        assert dropped == [("s1", "a-only")]
        # A merchant's call checked against brand a before the import committed: its write comes
        # after the import in the writer, and brand a's item is no longer on s1's menu.
        with pytest.raises(NotFound) as err:
            await store.set_availability("", "s1", "a-only", False, 3)
        assert err.value.reason == "ITEM_NOT_FOUND"
        assert (await store.load()).sold_out == [("s2", "a-only")]
    finally:
        await store.close()


def _seed(conn):
    for brand in ("a", "b"):
        conn.execute("INSERT INTO brands (brand_id, name, updated_ms) VALUES (?, ?, 1)", (brand, brand))
        conn.execute(
            "INSERT INTO menu_items (brand_id, item_id, name, price_fen, updated_ms) VALUES (?, ?, ?, 100, 1)",
            (brand, f"{brand}-only", brand),
        )
    for store_id in ("s1", "s2"):
        conn.execute(
            "INSERT INTO stores (store_id, brand_id, name, latitude, longitude, updated_ms) VALUES (?, 'a', ?, ?, ?, 1)",
            (store_id, store_id, *HZ),
        )


async def test_marks_an_earlier_import_left_on_a_moved_store_are_dropped_on_start(start_catalog, tmp_path):
    cat = await seeded(start_catalog, data_dir=tmp_path)
    await sold_out(cat, "s2", "a-only", "so-1")
    await cat.server.stop(0)
    path = catalog_settings(tmp_path).db_path
    conn = sqlite3.connect(str(path), isolation_level=None)
    # What the code before this fix left: s1 moved to brand b with brand a's marks kept.
    conn.execute("UPDATE stores SET brand_id = 'b' WHERE store_id = 's1'")
    conn.execute("INSERT INTO sold_out (store_id, item_id, updated_ms) VALUES ('s1', 'a-only', 1)")
    conn.close()
    again = await start_catalog(data_dir=tmp_path)
    assert "s1" not in again.server.catalog.sold_out
    assert await availability(again, "s2") == {"latte": True, "a-only": False}
    # b gets an item of that id later: it is not born sold out.
    item = catalog_pb2.MenuItem(item_id="a-only", brand_id="b", name="同名", price_fen=900)
    await again.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id="late", item=item), metadata=again.admin)
    assert await problems(again, "s1", "a-only") == []


async def test_a_merchant_cannot_mark_an_item_of_the_brand_its_store_left(start_catalog):
    cat = await seeded(start_catalog)
    await import_stores(cat, store_pb("s1", "b", *HZ))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sold_out(cat, "s1", "a-only", "so-9")
    assert (err.value.code(), error_details(err.value)["reason"]) == (grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND")
    await sold_out(cat, "s1", "b-only", "so-10")
    assert await problems(cat, "s1", "b-only") == ["ITEM_SOLD_OUT"]

