"""A store's week holds a bounded number of opening periods: every SearchStores hit, GetMenu and
GetStore sends them all, and every open-now check reads them all. An import row of 60,000 periods
was taken, and ten such stores in one neighbourhood made every search there an answer larger than
a client reads (RESOURCE_EXHAUSTED for every buyer nearby)."""

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog import model
from services.catalog.demo import load_menu
from tests.integration.catalog.conftest import HANGZHOU, store_pb


async def test_a_store_with_too_many_opening_periods_is_rejected_and_search_keeps_answering(start_catalog):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    crowded = [(1 + n % 7, 600, 601 + n % 800) for n in range(60_000)]
    rows = [store_pb(f"lk-many-{i}", "luckin", *HANGZHOU, hours=crowded) for i in range(10)]
    rows.append(store_pb("lk-week", "luckin", *HANGZHOU, hours=[(d, 420, 1320) for d in range(1, 8)]))
    reply = await cat.stub.ImportStores(iter([svc.ImportStoresRequest(stores=rows)]), metadata=cat.admin)
    assert (reply.accepted, reply.rejected) == (1, 10)
    assert {r.reason for r in reply.rejections} == {model.BAD_OPENING_HOURS}
    assert str(model.MAX_OPENING_PERIODS) in reply.rejections[0].message
    found = await cat.stub.SearchStores(svc.SearchStoresRequest(location=rows[-1].location), metadata=cat.md)
    assert [h.store.store_id for h in found.stores] == ["lk-week"]


async def test_a_week_of_several_periods_a_day_is_still_taken(start_catalog):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    # Breakfast, lunch, dinner and a late window every day: far below the limit.
    hours = [(d, o, o + 120) for d in range(1, 8) for o in (420, 660, 1020, 1320)]
    reply = await cat.stub.ImportStores(
        iter([svc.ImportStoresRequest(stores=[store_pb("lk-meals", "luckin", *HANGZHOU, hours=hours)])]), metadata=cat.admin
    )
    assert (reply.accepted, reply.rejected) == (1, 0)
    menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id="lk-meals"), metadata=cat.md)
    assert len(menu.store.opening_hours) == len(hours)
