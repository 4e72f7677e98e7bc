"""request_id is an idempotency key on the catalog's writes, over real gRPC and SQLite: a retry
(same request_id, same content) gets the first answer and changes nothing; the same request_id
for different content is ALREADY_EXISTS REQUEST_ID_REUSED (as in the card and order services);
and merchants' SetItemAvailability ids are scoped by store, so one merchant's "so-1" never
reaches another merchant's store."""
import asyncio
import json
import sqlite3

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from services.catalog.store import MIGRATIONS
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant
from tests.integration.catalog.conftest import catalog_settings, with_demo_stores

HZ = (30.2741, 120.1551)
GRAPE, LATTE = "heytea-very-grape", "luckin-coconut-latte"
REUSED = (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def cat(start_catalog):
    return await with_demo_stores(await start_catalog(), ("ht1", "heytea"), ("lk1", "luckin"))


def as_merchant(cat, merchant, **scope):
    grant = mint_grant(cat.settings.merchant_signing_key, merchant, ttl=3600, clock=cat.clock, **scope)
    return ((INTERNAL_TOKEN_KEY, cat.settings.internal_token), (MERCHANT_TOKEN_KEY, grant))


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


def set_availability(cat, md, request_id, store_id, item_id, available):
    return cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id=request_id, store_id=store_id, item_id=item_id, available=available), metadata=md
    )


async def availability(cat, store_id, item_id):
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md)
    return next(e.available for e in menu.entries if e.item.item_id == item_id)


def upsert_brand(cat, request_id, brand_id, name):
    return cat.stub.UpsertBrand(
        svc.UpsertBrandRequest(request_id=request_id, brand=catalog_pb2.Brand(brand_id=brand_id, name=name)), metadata=cat.admin
    )


def upsert_item(cat, request_id, item_id, price_fen, brand_id="luckin", name="测试"):
    item = catalog_pb2.MenuItem(item_id=item_id, brand_id=brand_id, name=name, price_fen=price_fen)
    return cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id=request_id, item=item), metadata=cat.admin)


async def brands(cat):
    r = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=100), metadata=cat.md)
    return {b.brand_id: b for b in r.brands}


async def menu_items(cat, store_id="lk1"):
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id=store_id), metadata=cat.md)
    return {e.item.item_id: e.item for e in menu.entries}


# --- SetItemAvailability: one merchant's ids never reach another merchant's store ----------------


async def test_two_merchants_using_the_same_request_id_each_change_their_own_store(cat):
    heytea, luckin = as_merchant(cat, "heytea-hq", brands=["heytea"]), as_merchant(cat, "luckin-hq", brands=["luckin"])
    r = await set_availability(cat, heytea, "so-1", "ht1", GRAPE, False)
    assert (r.store_id, r.item_id, r.available) == ("ht1", GRAPE, False)
    # Luckin picks the same id for its own store: its change happens.
    r = await set_availability(cat, luckin, "so-1", "lk1", LATTE, False)
    assert (r.store_id, r.item_id, r.available) == ("lk1", LATTE, False)
    assert await availability(cat, "lk1", LATTE) is False
    assert await availability(cat, "ht1", GRAPE) is False
    # Heytea's own restore under a new id is applied; Luckin's store is untouched.
    r = await set_availability(cat, heytea, "so-2", "ht1", GRAPE, True)
    assert r.available and await availability(cat, "ht1", GRAPE) is True
    assert await availability(cat, "lk1", LATTE) is False


async def test_a_request_id_reused_at_the_same_store_for_another_change_is_refused(cat):
    heytea = as_merchant(cat, "heytea-hq", brands=["heytea"])
    await set_availability(cat, heytea, "so-1", "ht1", GRAPE, False)
    # Same id, same store, the opposite change: a reused key, refused loudly, nothing changes.
    assert await refused(set_availability(cat, heytea, "so-1", "ht1", GRAPE, True)) == REUSED
    assert await refused(set_availability(cat, heytea, "so-1", "ht1", "heytea-green-tea", False)) == REUSED
    assert await availability(cat, "ht1", GRAPE) is False
    assert await availability(cat, "ht1", "heytea-green-tea") is True


async def test_an_availability_retry_returns_the_first_answer_and_changes_nothing(cat):
    heytea = as_merchant(cat, "heytea-hq", brands=["heytea"])
    first = await set_availability(cat, heytea, "so-1", "ht1", GRAPE, False)
    again = await set_availability(cat, cat.merchant, "so-1", "ht1", GRAPE, False)  # the hub retries it
    assert again == first
    await set_availability(cat, heytea, "so-2", "ht1", GRAPE, True)
    late = await set_availability(cat, heytea, "so-1", "ht1", GRAPE, False)
    assert late == first  # the first answer, and the later restore stands
    assert await availability(cat, "ht1", GRAPE) is True


async def test_a_replay_still_needs_a_grant_covering_the_store(cat):
    await set_availability(cat, as_merchant(cat, "heytea-hq", brands=["heytea"]), "so-1", "ht1", GRAPE, False)
    luckin = as_merchant(cat, "luckin-hq", brands=["luckin"])
    assert await refused(set_availability(cat, luckin, "so-1", "ht1", GRAPE, False)) == (
        grpc.StatusCode.PERMISSION_DENIED, "STORE_NOT_YOURS"
    )


# --- UpsertBrand / UpsertMenuItem: never report a write that did not happen -----------------------


async def test_upsert_brand_with_a_request_id_used_for_another_brand_is_refused(cat):
    r = await upsert_brand(cat, "b-1", "bh-a", "品牌A")
    assert r.created and r.brand.brand_id == "bh-a"
    assert await refused(upsert_brand(cat, "b-1", "bh-b", "品牌B")) == REUSED
    assert await refused(upsert_brand(cat, "b-1", "bh-a", "品牌A改名")) == REUSED  # same brand, other content
    stored = await brands(cat)
    assert "bh-b" not in stored and stored["bh-a"].name == "品牌A"


async def test_upsert_menu_item_with_a_request_id_used_for_another_item_is_refused(cat):
    r = await upsert_item(cat, "i-1", "lk-a", 500)
    assert r.created and r.item.price_fen == 500
    assert await refused(upsert_item(cat, "i-1", "lk-b", 999)) == REUSED
    assert await refused(upsert_item(cat, "i-1", "lk-a", 999)) == REUSED
    assert await refused(upsert_item(cat, "i-1", "lk-a", 500, brand_id="heytea")) == REUSED
    items = await menu_items(cat)
    assert "lk-b" not in items and items["lk-a"].price_fen == 500
    assert "lk-a" not in await menu_items(cat, "ht1")
    q = await cat.stub.Quote(svc.QuoteRequest(store_id="lk1", lines=[catalog_pb2.LineSelection(item_id="lk-b", quantity=1)]), metadata=cat.md)
    assert not q.orderable and q.problems[0].reason == "UNKNOWN_ITEM"


async def test_upsert_retries_return_the_first_answer_as_stored_then(cat):
    first = await upsert_brand(cat, "b-1", "bh-a", "品牌A")
    assert first.created
    assert await upsert_brand(cat, "b-1", "bh-a", "品牌A") == first
    renamed = await upsert_brand(cat, "b-2", "bh-a", "品牌A新名")
    assert not renamed.created
    assert await upsert_brand(cat, "b-1", "bh-a", "品牌A") == first  # the first answer...
    assert (await brands(cat))["bh-a"].name == "品牌A新名"  # ...and the later rename stands

    item_first = await upsert_item(cat, "i-1", "lk-a", 500)
    assert item_first.created and await upsert_item(cat, "i-1", "lk-a", 500) == item_first
    repriced = await upsert_item(cat, "i-2", "lk-a", 600)
    assert not repriced.created and repriced.item.price_fen == 600
    assert await upsert_item(cat, "i-1", "lk-a", 500) == item_first
    assert (await menu_items(cat))["lk-a"].price_fen == 600


async def test_one_request_id_serves_each_write_rpc_once(cat):
    # Namespaces are per RPC (as in the card service): "x" may name a brand and an item upsert.
    assert (await upsert_brand(cat, "x", "bh-a", "品牌A")).created
    assert (await upsert_item(cat, "x", "lk-a", 500)).created
    assert not (await set_availability(cat, cat.merchant, "x", "lk1", "lk-a", False)).available


# --- concurrency: one request_id, many racing payloads -> exactly one applied ---------------------


async def _outcomes(calls):
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok, reused = [], 0
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            assert (r.code(), error_details(r)["reason"]) == REUSED, error_details(r)
            reused += 1
        else:
            assert not isinstance(r, BaseException), r
            ok.append(r)
    return ok, reused


async def test_concurrent_brand_upserts_with_one_request_id_apply_exactly_one(cat):
    names = ["甲", "乙", "丙", "丁"]
    ok, reused = await _outcomes([upsert_brand(cat, "race", "bh-r", names[i % 4]) for i in range(20)])
    assert ok and len(ok) + reused == 20
    winner = ok[0].brand.name
    assert all(r.brand.name == winner and r.created for r in ok)  # every success is the first answer
    assert len(ok) == 5 and reused == 15  # the 5 calls with the winner's payload, no other
    assert (await brands(cat))["bh-r"].name == winner


async def test_concurrent_item_upserts_with_one_request_id_apply_exactly_one(cat):
    ok, reused = await _outcomes([upsert_item(cat, "race", f"lk-{i % 5}", 100 + i % 5) for i in range(20)])
    assert len(ok) == 4 and reused == 16
    winner = ok[0].item
    assert all(r.item == winner and r.created for r in ok)
    items = await menu_items(cat)
    assert [i for i in items if i.startswith("lk-")] == [winner.item_id] and items[winner.item_id].price_fen == winner.price_fen


async def test_concurrent_availability_with_one_request_id_applies_exactly_one_per_store(cat):
    calls = [set_availability(cat, cat.merchant, "so-race", "lk1", LATTE, bool(i % 2)) for i in range(20)]
    calls += [set_availability(cat, cat.merchant, "so-race", "ht1", GRAPE, False) for _ in range(5)]
    ok, reused = await _outcomes(calls)
    assert reused == 10
    at_lk1 = {r.available for r in ok if r.store_id == "lk1"}
    assert len(at_lk1) == 1 and len([r for r in ok if r.store_id == "lk1"]) == 10
    assert await availability(cat, "lk1", LATTE) is at_lk1.pop()
    # The other store's calls with the same id are its own: all five are the one change there.
    assert [r.available for r in ok if r.store_id == "ht1"] == [False] * 5
    assert await availability(cat, "ht1", GRAPE) is False


# --- an existing database (schema 1, with old request rows) still opens ---------------------------


async def test_a_database_of_the_previous_schema_opens_and_keeps_its_catalog(tmp_path, start_catalog):
    path = catalog_settings(tmp_path).db_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.executescript(f"BEGIN;\n{MIGRATIONS[0]}\n;PRAGMA user_version=1;\nCOMMIT;")
    conn.execute("INSERT INTO brands (brand_id, name, aliases, updated_ms) VALUES ('old', '老品牌', ?, 1)", (json.dumps([]),))
    conn.execute("INSERT INTO menu_items (brand_id, item_id, name, price_fen, updated_ms) VALUES ('old', 'tea', '茶', 800, 1)")
    conn.execute(
        "INSERT INTO stores (store_id, brand_id, name, latitude, longitude, hours, updated_ms) VALUES ('o1', 'old', '老店', ?, ?, '', 1)", HZ
    )
    conn.execute("INSERT INTO sold_out (store_id, item_id, updated_ms) VALUES ('o1', 'tea', 1)")
    conn.executemany(
        "INSERT INTO requests (kind, request_id, created, at_ms) VALUES (?, ?, ?, 1)",
        [("brand", "b-old", 1), ("item", "i-old", 1), ("availability", "so-1", 0)],
    )
    conn.close()

    cat = await start_catalog(data_dir=tmp_path)
    assert (await brands(cat))["old"].name == "老品牌"
    assert await availability(cat, "o1", "tea") is False
    # The old ids recorded no content: a retry of one re-applies its (whole-row) write.
    r = await upsert_brand(cat, "b-old", "old", "老品牌")
    assert r.brand.name == "老品牌"
    r = await set_availability(cat, cat.merchant, "so-1", "o1", "tea", True)
    assert r.available and await availability(cat, "o1", "tea") is True
    # From now on ids are checked as everywhere else.
    assert await refused(upsert_brand(cat, "b-old", "other", "别的")) == REUSED
    conn = sqlite3.connect(str(path))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    conn.close()
