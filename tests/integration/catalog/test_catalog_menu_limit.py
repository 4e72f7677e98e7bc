"""A brand's menu holds at most MAX_MENU_ITEMS items, however many upserts race for the last
places; its items can still be updated (real gRPC and SQLite)."""
import asyncio
import sqlite3

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.catalog.model import MAX_MENU_ITEMS, MenuItem
from services.catalog.store import SqliteCatalogStore
from services.common.errors import FailedPrecondition, error_details

from tests.integration.catalog.conftest import catalog_settings

pytestmark = pytest.mark.timeout(60)
FREE = 5  # places left on the seeded menu


async def nearly_full(start_catalog, tmp_path):
    """A catalog whose brand "big" has MAX_MENU_ITEMS - FREE items (written straight into the
    store: thousands of UpsertMenuItem calls would only slow the test down)."""
    store = await SqliteCatalogStore.open(catalog_settings(tmp_path).db_path)

    def seed(conn):
        for brand in ("big", "small"):
            conn.execute("INSERT INTO brands (brand_id, name, updated_ms) VALUES (?, ?, 1)", (brand, brand))
        conn.executemany(
            "INSERT INTO menu_items (brand_id, item_id, name, price_fen, updated_ms) VALUES ('big', ?, ?, 1000, 1)",
            [(f"old-{n}", f"菜{n}") for n in range(MAX_MENU_ITEMS - FREE)],
        )

    await store.db.write(seed)
    await store.close()
    return await start_catalog(data_dir=tmp_path)


def upsert(cat, request_id, item_id, brand_id="big", price_fen=1500):
    item = catalog_pb2.MenuItem(item_id=item_id, brand_id=brand_id, name=f"新{item_id}", price_fen=price_fen)
    return cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id=request_id, item=item), metadata=cat.admin)


async def outcome(call):
    try:
        r = await call
    except grpc.aio.AioRpcError as err:
        return err.code(), error_details(err)["reason"]
    return "created" if r.created else "updated"


async def test_concurrent_upserts_fill_the_last_places_and_no_more(start_catalog, tmp_path):
    cat = await nearly_full(start_catalog, tmp_path)
    catalog = cat.server.catalog

    async def use_case(request_id, item_id, price_fen=1500):
        # The use case itself, not over gRPC: the calls then all reach the store before the
        # first commits, as a burst from many clients does on a busy server.
        try:
            _, created = await catalog.upsert_item(request_id, MenuItem(item_id, "big", f"新{item_id}", price_fen))
        except FailedPrecondition as err:
            return err.reason
        return "created" if created else "updated"

    new = [use_case(f"new-{n}", f"new-{n}") for n in range(40)]
    updates = [use_case(f"upd-{n}", f"old-{n}", 2000 + n) for n in range(10)]
    over_grpc = [outcome(upsert(cat, f"rpc-{n}", f"rpc-{n}")) for n in range(10)]
    results = await asyncio.gather(*new, *updates, *over_grpc)
    assert results[40:50] == ["updated"] * 10
    created = [r for r in results[:40] + results[50:] if r == "created"]
    refused = [r for r in results[:40] + results[50:] if r != "created"]
    assert len(created) == FREE and set(refused) <= {"MENU_FULL", (grpc.StatusCode.FAILED_PRECONDITION, "MENU_FULL")}
    assert len(catalog.menus["big"]) == MAX_MENU_ITEMS
    conn = sqlite3.connect(str(catalog_settings(tmp_path).db_path))
    assert conn.execute("SELECT COUNT(*) FROM menu_items WHERE brand_id = 'big'").fetchone()[0] == MAX_MENU_ITEMS
    conn.close()


async def test_a_full_menu_refuses_a_new_item_but_updates_its_own_and_other_brands_grow(start_catalog, tmp_path):
    cat = await nearly_full(start_catalog, tmp_path)
    for n in range(FREE):
        assert await outcome(upsert(cat, f"fill-{n}", f"fill-{n}")) == "created"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upsert(cat, "one-more", "one-more")
    details = error_details(err.value)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and details["reason"] == "MENU_FULL"
    assert details["metadata"] == {"brand_id": "big", "max_items": str(MAX_MENU_ITEMS)} and "2,000" in details["message"]
    assert "one-more" not in cat.server.catalog.menus["big"]
    r = await upsert(cat, "reprice", "old-7", price_fen=999)
    assert not r.created and cat.server.catalog.menus["big"]["old-7"].price_fen == 999
    # A retry of a call that took a place before the menu filled gets its first answer.
    assert (await upsert(cat, "fill-0", "fill-0")).created
    assert await outcome(upsert(cat, "small-1", "tea", brand_id="small")) == "created"
