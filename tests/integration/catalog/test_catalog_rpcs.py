"""Every catalog RPC and every error over real gRPC and SQLite."""
import asyncio
import base64

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as svc
from miandan.common.v1 import common_pb2
from services.catalog.demo import load_menu
from services.catalog.handlers import MAX_SEARCH_OFFSET
from services.common.errors import error_details

from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)
pytestmark = pytest.mark.timeout(30)


def loc(lat=HZ[0], lng=HZ[1]):
    return common_pb2.GeoPoint(latitude=lat, longitude=lng)


async def stream_of(*batches):
    for batch in batches:
        yield svc.ImportStoresRequest(stores=batch)


async def expect_error(call, code, reason=None, field=None):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    details = error_details(err.value)
    assert err.value.code() == code, details
    if reason is not None:
        assert details["reason"] == reason, details
    if field is not None:
        assert any(f == field for f, _ in details["violations"]), details
    return details


@pytest.fixture
async def cat(start_catalog):
    running = await start_catalog()
    await load_menu(running.stub, running.admin)
    return running


async def test_import_accepts_good_rows_and_reports_bad_ones_by_stream_position(cat):
    first = [store_pb("a1", "luckin", 30.27, 120.15), store_pb("", "luckin", 30.27, 120.15), store_pb("a2", "starbucks", 30.27, 120.15)]
    second = [
        store_pb("a3", "mixue", 95.0, 120.0),
        store_pb("a4", "mixue", 30.2, 120.1, hours=[(1, 600, 500)]),
        store_pb("a5", "mixue", 30.2, 120.1, name=""),
        store_pb("a6", "kfc", 30.28, 120.16, hours=[(d, 360, 1440) for d in range(1, 8)]),
    ]
    r = await cat.stub.ImportStores(stream_of(first, second), metadata=cat.admin)
    assert (r.accepted, r.rejected) == (2, 5)
    assert [(x.row_index, x.store_id, x.reason) for x in r.rejections] == [
        (1, "", "MISSING_STORE_ID"), (2, "a2", "UNKNOWN_BRAND"), (3, "a3", "LOCATION_OUT_OF_RANGE"),
        (4, "a4", "BAD_OPENING_HOURS"), (5, "a5", "MISSING_NAME"),
    ]
    assert all(x.message for x in r.rejections)


async def test_reimporting_the_same_stores_updates_instead_of_duplicating(cat):
    batch = [store_pb(f"s{i}", "luckin", HZ[0] + i * 0.0001, HZ[1]) for i in range(50)]
    for _ in range(2):
        r = await cat.stub.ImportStores(stream_of(batch), metadata=cat.admin)
        assert r.accepted == 50
    moved = [store_pb("s0", "luckin", 31.23, 121.47, name="moved")]
    await cat.stub.ImportStores(stream_of(moved), metadata=cat.admin)
    hits = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=5000, page_size=100), metadata=cat.md)
    assert len(hits.stores) == 49 and "s0" not in {h.store.store_id for h in hits.stores}
    hits = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(31.23, 121.47), page_size=5), metadata=cat.md)
    assert [h.store.name for h in hits.stores] == ["moved"]


async def test_concurrent_imports_of_overlapping_stores_leave_each_store_once(cat):
    batch = [store_pb(f"c{i}", "mixue", HZ[0] + i * 0.00005, HZ[1]) for i in range(300)]
    results = await asyncio.gather(*(cat.stub.ImportStores(stream_of(batch[:200], batch[100:]), metadata=cat.admin) for _ in range(4)))
    assert all(r.accepted == 400 for r in results)
    hits = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=50000, page_size=100), metadata=cat.md)
    page2 = await cat.stub.SearchStores(
        svc.SearchStoresRequest(location=loc(), radius_meters=50000, page_size=100, page_token=hits.next_page_token), metadata=cat.md
    )
    ids = [h.store.store_id for h in hits.stores] + [h.store.store_id for h in page2.stores]
    assert len(ids) == len(set(ids)) == 200


async def test_writes_need_the_admin_credential(cat):
    await expect_error(cat.stub.UpsertBrand(svc.UpsertBrandRequest(brand=catalog_pb2.Brand(brand_id="x", name="X")), metadata=cat.md),
                       grpc.StatusCode.PERMISSION_DENIED, "ADMIN_REQUIRED")
    await expect_error(cat.stub.ImportStores(stream_of([]), metadata=cat.merchant), grpc.StatusCode.PERMISSION_DENIED)
    await expect_error(cat.stub.ListBrands(svc.ListBrandsRequest()), grpc.StatusCode.UNAUTHENTICATED, "CREDENTIAL_MISSING")


async def test_upsert_brand_creates_then_replaces_and_a_retry_returns_the_first_outcome(cat):
    brand = catalog_pb2.Brand(brand_id="chagee", name="霸王茶姬", aliases=["CHAGEE"], category="茶饮")
    r1 = await cat.stub.UpsertBrand(svc.UpsertBrandRequest(request_id="b-1", brand=brand), metadata=cat.admin)
    assert r1.created and r1.brand.name == "霸王茶姬"
    r1_again = await cat.stub.UpsertBrand(svc.UpsertBrandRequest(request_id="b-1", brand=brand), metadata=cat.admin)
    assert r1_again.created
    brand.name = "霸王茶姬 CHAGEE"
    r2 = await cat.stub.UpsertBrand(svc.UpsertBrandRequest(request_id="b-2", brand=brand), metadata=cat.admin)
    assert not r2.created and r2.brand.name == "霸王茶姬 CHAGEE"
    await expect_error(cat.stub.UpsertBrand(svc.UpsertBrandRequest(brand=catalog_pb2.Brand(brand_id="", name="")), metadata=cat.admin),
                       grpc.StatusCode.INVALID_ARGUMENT, field="brand.brand_id")


async def test_upsert_menu_item_validates_and_needs_a_known_brand(cat):
    item = catalog_pb2.MenuItem(item_id="x1", brand_id="nobody", name="X", price_fen=100)
    await expect_error(cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(item=item), metadata=cat.admin), grpc.StatusCode.NOT_FOUND, "BRAND_NOT_FOUND")
    item.brand_id, item.price_fen = "luckin", -5
    await expect_error(cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(item=item), metadata=cat.admin),
                       grpc.StatusCode.INVALID_ARGUMENT, field="item.price_fen")
    item.price_fen = 1500
    item.option_groups.add(group_id="size", name="杯型", default_option_id="huge").options.add(option_id="medium", name="中杯")
    await expect_error(cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(item=item), metadata=cat.admin),
                       grpc.StatusCode.INVALID_ARGUMENT, field="item.option_groups[0].default_option_id")
    item.option_groups[0].default_option_id = "medium"
    r = await cat.stub.UpsertMenuItem(svc.UpsertMenuItemRequest(request_id="i-1", item=item), metadata=cat.admin)
    assert r.created and r.item.option_groups[0].options[0].option_id == "medium"


async def test_list_brands_filters_by_category_and_pages(cat):
    r = await cat.stub.ListBrands(svc.ListBrandsRequest(), metadata=cat.md)
    assert [b.brand_id for b in r.brands] == ["freshippo", "heytea", "kfc", "luckin", "mixue"] and not r.next_page_token
    r = await cat.stub.ListBrands(svc.ListBrandsRequest(category="茶饮"), metadata=cat.md)
    assert {b.name for b in r.brands} == {"蜜雪冰城", "喜茶"}
    p1 = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=2), metadata=cat.md)
    p2 = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=2, page_token=p1.next_page_token), metadata=cat.md)
    p3 = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=2, page_token=p2.next_page_token), metadata=cat.md)
    assert [b.brand_id for p in (p1, p2, p3) for b in p.brands] == ["freshippo", "heytea", "kfc", "luckin", "mixue"]
    assert not p3.next_page_token
    await expect_error(cat.stub.ListBrands(svc.ListBrandsRequest(page_size=-1), metadata=cat.md), grpc.StatusCode.INVALID_ARGUMENT, field="page_size")
    await expect_error(cat.stub.ListBrands(svc.ListBrandsRequest(page_token="garbage!"), metadata=cat.md),
                       grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


async def test_search_stores_orders_by_distance_and_filters(cat):
    stores = [
        store_pb("near-kfc", "kfc", HZ[0] + 0.001, HZ[1], address="延安路1号"),
        store_pb("mid-luckin", "luckin", HZ[0] + 0.005, HZ[1]),
        store_pb("far-luckin", "luckin", HZ[0] + 0.02, HZ[1]),
        store_pb("closed-luckin", "luckin", HZ[0] + 0.002, HZ[1], closed=True),
        store_pb("morning-luckin", "luckin", HZ[0] + 0.003, HZ[1], hours=[(d, 420, 600) for d in range(1, 8)]),
        store_pb("shanghai", "luckin", 31.23, 121.47),
    ]
    await cat.stub.ImportStores(stream_of(stores), metadata=cat.admin)
    r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=5000), metadata=cat.md)
    ids = [h.store.store_id for h in r.stores]
    assert ids == ["near-kfc", "closed-luckin", "morning-luckin", "mid-luckin", "far-luckin"]
    dists = [h.distance_meters for h in r.stores]
    assert dists == sorted(dists) and 100 < dists[0] < 125
    first = r.stores[0]
    assert first.store.address == "延安路1号" and first.store.city == "杭州" and first.brand.name == "肯德基" and first.open_now
    r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=5000, brand_id="luckin", open_now=True), metadata=cat.md)
    assert [h.store.store_id for h in r.stores] == ["mid-luckin", "far-luckin"]
    r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=1000, category="快餐"), metadata=cat.md)
    assert [h.store.store_id for h in r.stores] == ["near-kfc"]
    r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=200), metadata=cat.md)
    assert [h.store.store_id for h in r.stores] == ["near-kfc"]


async def test_search_stores_finds_stores_across_the_antimeridian(cat):
    # Taveuni, Fiji, straddles 180°: stores 1-2 km apart on either side of the meridian.
    stores = [
        store_pb("east", "luckin", -16.80, 179.99), store_pb("west", "kfc", -16.80, -179.99),
        store_pb("far-west", "kfc", -16.80, -179.5), store_pb("greenwich", "luckin", -16.80, 0.01),
    ]
    await cat.stub.ImportStores(stream_of(stores), metadata=cat.admin)
    for lng, want in ((-179.995, ["west", "east"]), (179.995, ["east", "west"])):
        r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(-16.80, lng), radius_meters=5000), metadata=cat.md)
        assert [h.store.store_id for h in r.stores] == want
        assert all(h.distance_meters < 1700 for h in r.stores)
    r = await cat.stub.SearchStores(
        svc.SearchStoresRequest(location=loc(-16.80, -179.99), radius_meters=5000, brand_id="luckin", open_now=True), metadata=cat.md
    )
    assert [h.store.store_id for h in r.stores] == ["east"]


@pytest.mark.parametrize("request_kw, code, field", [
    ({"location": common_pb2.GeoPoint(latitude=91, longitude=0)}, grpc.StatusCode.INVALID_ARGUMENT, "location"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=-200)}, grpc.StatusCode.INVALID_ARGUMENT, "location"),
    ({}, grpc.StatusCode.INVALID_ARGUMENT, "location"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=120), "page_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=120), "radius_meters": -1}, grpc.StatusCode.INVALID_ARGUMENT, "radius_meters"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=120), "radius_meters": 50_001}, grpc.StatusCode.INVALID_ARGUMENT, "radius_meters"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=120), "radius_meters": float("nan")}, grpc.StatusCode.INVALID_ARGUMENT, "radius_meters"),
    ({"location": common_pb2.GeoPoint(latitude=30, longitude=120), "page_token": "x"}, grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
])
async def test_search_stores_refuses_bad_input(cat, request_kw, code, field):
    await expect_error(cat.stub.SearchStores(svc.SearchStoresRequest(**request_kw), metadata=cat.md), code, field=field)


def _search_token(raw: str) -> str:
    """A SearchStores token's shape: urlsafe base64, padding stripped, of "stores:<offset>"."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("raw", [
    "stores:²",  # str.isdigit() accepts it, int() raises ValueError: was an INTERNAL
    "stores:①",
    "stores:١٢",  # Arabic-Indic digits: int() reads 12, so the token was taken
    "stores:１２",  # full-width digits: likewise
    "stores:" + "9" * 25,
    f"stores:{MAX_SEARCH_OFFSET + 1}",
    "stores:-1",
    "stores:",
    "brands:10",  # another request's token
])
async def test_search_stores_refuses_a_crafted_page_token(cat, raw):
    await expect_error(
        cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), page_token=_search_token(raw)), metadata=cat.md),
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", field="page_token",
    )


async def test_search_stores_takes_a_token_up_to_the_largest_offset(cat):
    r = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), page_token=_search_token(f"stores:{MAX_SEARCH_OFFSET}")), metadata=cat.md)
    assert not r.stores and not r.next_page_token


async def test_search_by_an_unknown_brand_is_not_found(cat):
    await expect_error(cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), brand_id="starbucks"), metadata=cat.md),
                       grpc.StatusCode.NOT_FOUND, "BRAND_NOT_FOUND")


async def test_get_menu_shows_availability_set_by_the_merchant(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ)]), metadata=cat.admin)
    r = await cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id="a-1", store_id="s1", item_id="luckin-coconut-latte", available=False), metadata=cat.merchant
    )
    assert not r.available
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="s1"), metadata=cat.md)
    assert menu.brand.brand_id == "luckin" and menu.open_now and menu.store.address == "西湖区1号"
    availability = {e.item.name: e.available for e in menu.entries}
    assert availability["生椰拿铁"] is False and availability["厚乳拿铁"] is True
    latte = next(e.item for e in menu.entries if e.item.name == "生椰拿铁")
    assert [g.group_id for g in latte.option_groups] == ["size", "sugar", "temperature"]
    r = await cat.stub.SetItemAvailability(
        svc.SetItemAvailabilityRequest(request_id="a-2", store_id="s1", item_id="luckin-coconut-latte", available=True), metadata=cat.admin
    )
    assert r.available


async def test_availability_errors(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ)]), metadata=cat.admin)
    set_ = cat.stub.SetItemAvailability
    await expect_error(set_(svc.SetItemAvailabilityRequest(store_id="s1", item_id="luckin-coconut-latte"), metadata=cat.md),
                       grpc.StatusCode.PERMISSION_DENIED, "MERCHANT_REQUIRED")
    await expect_error(set_(svc.SetItemAvailabilityRequest(store_id="nope", item_id="x"), metadata=cat.admin), grpc.StatusCode.NOT_FOUND, "STORE_NOT_FOUND")
    await expect_error(set_(svc.SetItemAvailabilityRequest(store_id="s1", item_id="mixue-lemonade"), metadata=cat.admin),
                       grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND")
    await expect_error(set_(svc.SetItemAvailabilityRequest(store_id="", item_id="x"), metadata=cat.admin), grpc.StatusCode.INVALID_ARGUMENT, field="store_id")
    await expect_error(cat.stub.GetMenu(svc.GetMenuRequest(store_id="nope"), metadata=cat.md), grpc.StatusCode.NOT_FOUND, "STORE_NOT_FOUND")
    await expect_error(cat.stub.GetMenu(svc.GetMenuRequest(), metadata=cat.md), grpc.StatusCode.INVALID_ARGUMENT, field="store_id")


async def test_get_store_says_whose_the_store_is_now_without_its_menu(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ)]), metadata=cat.admin)
    got = (await cat.stub.GetStore(svc.GetStoreRequest(store_id="s1"), metadata=cat.md)).store
    assert (got.store_id, got.brand_id, got.address) == ("s1", "luckin", "西湖区1号")
    await cat.stub.ImportStores(stream_of([store_pb("s1", "mixue", *HZ)]), metadata=cat.admin)  # a franchise changes chains
    assert (await cat.stub.GetStore(svc.GetStoreRequest(store_id="s1"), metadata=cat.md)).store.brand_id == "mixue"
    await expect_error(cat.stub.GetStore(svc.GetStoreRequest(store_id="nope"), metadata=cat.md), grpc.StatusCode.NOT_FOUND, "STORE_NOT_FOUND")
    await expect_error(cat.stub.GetStore(svc.GetStoreRequest(), metadata=cat.md), grpc.StatusCode.INVALID_ARGUMENT, field="store_id")
    # Internal: a merchant's credential alone does not open it.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cat.stub.GetStore(svc.GetStoreRequest(store_id="s1"), metadata=cat.merchant[1:])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def line(item_id, qty=1, **options):
    return catalog_pb2.LineSelection(item_id=item_id, quantity=qty, options=[catalog_pb2.OptionChoice(group_id=g, option_id=o) for g, o in options.items()])


async def test_quote_prices_lines_with_options(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ, name="瑞幸咖啡(西湖店)")]), metadata=cat.admin)
    r = await cat.stub.Quote(svc.QuoteRequest(store_id="s1", lines=[
        line("luckin-coconut-latte", 2, size="large", temperature="less_ice"), line("luckin-americano")]), metadata=cat.md)
    assert r.orderable and not r.problems
    latte, americano = r.quote.lines
    assert latte.unit_price_fen == 3200 and latte.line_total_fen == 6400 and latte.item_name == "生椰拿铁"
    assert {o.group_id: o.name for o in latte.options} == {"size": "大杯", "sugar": "标准糖", "temperature": "少冰"}
    assert r.quote.total_fen == 6400 + americano.line_total_fen and r.quote.store_name == "瑞幸咖啡(西湖店)"
    assert r.quote.quote_time.seconds == int(cat.clock.now().timestamp())


async def test_quote_names_each_problem_precisely(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ)]), metadata=cat.admin)
    await cat.stub.SetItemAvailability(svc.SetItemAvailabilityRequest(store_id="s1", item_id="luckin-velvet-latte", available=False), metadata=cat.admin)
    r = await cat.stub.Quote(svc.QuoteRequest(store_id="s1", lines=[
        line("mixue-lemonade"), line("luckin-velvet-latte"), line("luckin-coconut-latte", size="venti"),
        line("luckin-coconut-latte", 0), line("luckin-coconut-latte", 100), line("luckin-americano")]), metadata=cat.md)
    assert not r.orderable
    assert [(p.line_index, p.reason) for p in r.problems] == [
        (0, "UNKNOWN_ITEM"), (1, "ITEM_SOLD_OUT"), (2, "OPTION_NOT_OFFERED"), (3, "QUANTITY_OUT_OF_RANGE"), (4, "QUANTITY_OUT_OF_RANGE")]
    assert [l.line_index for l in r.quote.lines] == [5]


async def test_quote_at_a_closed_store_reports_store_closed(cat):
    await cat.stub.ImportStores(stream_of([
        store_pb("flagged", "luckin", *HZ, closed=True),
        store_pb("morning", "luckin", *HZ, hours=[(d, 420, 600) for d in range(1, 8)]),
        store_pb("late", "mixue", *HZ, hours=[(d, 1200, 1560) for d in range(1, 8)])]), metadata=cat.admin)
    for store_id in ("flagged", "morning"):
        r = await cat.stub.Quote(svc.QuoteRequest(store_id=store_id, lines=[line("luckin-americano")]), metadata=cat.md)
        assert [(p.line_index, p.reason) for p in r.problems] == [(-1, "STORE_CLOSED")] and not r.orderable
    cat.clock.advance(hours=5)  # 01:00 Thursday: the 20:00-02:00 period of Wednesday still runs
    r = await cat.stub.Quote(svc.QuoteRequest(store_id="late", lines=[line("mixue-lemonade")]), metadata=cat.md)
    assert r.orderable
    cat.clock.advance(hours=1)
    r = await cat.stub.Quote(svc.QuoteRequest(store_id="late", lines=[line("mixue-lemonade")]), metadata=cat.md)
    assert [p.reason for p in r.problems] == ["STORE_CLOSED"]


async def test_quote_refuses_bad_requests(cat):
    await cat.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ)]), metadata=cat.admin)
    q = cat.stub.Quote
    await expect_error(q(svc.QuoteRequest(store_id="nope", lines=[line("x")]), metadata=cat.md), grpc.StatusCode.NOT_FOUND, "STORE_NOT_FOUND")
    await expect_error(q(svc.QuoteRequest(store_id="s1"), metadata=cat.md), grpc.StatusCode.INVALID_ARGUMENT, field="lines")
    await expect_error(q(svc.QuoteRequest(store_id="s1", lines=[line("luckin-americano")] * 51), metadata=cat.md),
                       grpc.StatusCode.INVALID_ARGUMENT, field="lines")
    dup = catalog_pb2.LineSelection(item_id="luckin-americano", quantity=1, options=[
        catalog_pb2.OptionChoice(group_id="size", option_id="medium"), catalog_pb2.OptionChoice(group_id="size", option_id="large")])
    await expect_error(q(svc.QuoteRequest(store_id="s1", lines=[dup]), metadata=cat.md), grpc.StatusCode.INVALID_ARGUMENT, field="lines[0].options")


async def test_everything_survives_a_restart(start_catalog, tmp_path):
    first = await start_catalog(data_dir=tmp_path / "d")
    await load_menu(first.stub, first.admin)
    await first.stub.ImportStores(stream_of([store_pb("s1", "luckin", *HZ, hours=[(3, 600, 1500)])]), metadata=first.admin)
    await first.stub.SetItemAvailability(svc.SetItemAvailabilityRequest(store_id="s1", item_id="luckin-americano", available=False), metadata=first.admin)
    await first.server.stop(0)
    second = await start_catalog(data_dir=tmp_path / "d")
    menu = await second.stub.GetMenu(svc.GetMenuRequest(store_id="s1"), metadata=second.md)
    assert {e.item.item_id: e.available for e in menu.entries}["luckin-americano"] is False
    assert [(p.weekday, p.open_minute, p.close_minute) for p in menu.store.opening_hours] == [(3, 600, 1500)]
    hits = await second.stub.SearchStores(svc.SearchStoresRequest(location=loc()), metadata=second.md)
    assert [h.store.store_id for h in hits.stores] == ["s1"]


async def test_paging_through_stores_at_the_very_same_spot_shows_each_store_once(cat):
    # A mall, or a bulk import geocoded to one point: fifteen stores at one distance. Page one
    # kept the greatest ids of the tie and sorted them by id, page two the smallest: it showed
    # four stores again and never the first four.
    stores = [store_pb(f"mall-{i:02d}", "luckin", HZ[0], HZ[1]) for i in range(15)]
    await cat.stub.ImportStores(stream_of(stores), metadata=cat.admin)
    for filters in ({}, {"brand_id": "luckin"}, {"open_now": True}, {"brand_id": "luckin", "open_now": True}):
        seen, token = [], ""
        while True:
            r = await cat.stub.SearchStores(
                svc.SearchStoresRequest(location=loc(), page_size=10, page_token=token, **filters), metadata=cat.md
            )
            seen += [h.store.store_id for h in r.stores]
            token = r.next_page_token
            if not token:
                break
        assert seen == [s.store_id for s in stores], filters


async def test_a_page_size_above_the_maximum_is_read_as_the_maximum_not_refused(cat):
    # The proto's contract for ListBrands and SearchStores (AIP-158 style): 101 or 2**31-1 reads as 100.
    stores = [store_pb(f"s{i:03d}", "luckin", HZ[0] + i * 0.0001, HZ[1]) for i in range(120)]
    await cat.stub.ImportStores(stream_of(stores), metadata=cat.admin)
    for size in (101, 2**31 - 1):
        hits = await cat.stub.SearchStores(svc.SearchStoresRequest(location=loc(), radius_meters=50000, page_size=size), metadata=cat.md)
        assert len(hits.stores) == 100 and hits.next_page_token
        brands = await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=size), metadata=cat.md)
        assert len(brands.brands) == 5 and not brands.next_page_token
