"""Imports keep bringing new opening hours for the same stores over a campaign of weeks: what
the catalog shares and memoises of timetables stays bounded (it kept every timetable it had
ever seen, even once no store had it any more), and a store whose timetable is not shared still
has its own hours."""
from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog import model
from services.catalog.demo import load_menu
from tests.integration.catalog.conftest import store_pb

HZ = (30.2741, 120.1551)
STORES, IMPORTS, ROOM = 50, 6, 40


def _hours(store: int, round_: int) -> list[tuple[int, int, int]]:
    """A timetable of its own for each store and import (the minutes encode both)."""
    return [(day, 360 + store, 1200 + round_) for day in range(1, 8)]


async def test_reimported_hours_do_not_pile_up(start_catalog, monkeypatch):
    cat = await start_catalog()
    await load_menu(cat.stub, cat.admin)
    monkeypatch.setattr(model, "MAX_REMEMBERED_TIMETABLES", len(model._HOURS_INTERN) + ROOM, raising=False)
    interned, encoded = len(model._HOURS_INTERN), len(model._ENCODED)
    for round_ in range(IMPORTS):
        stores = [store_pb(f"lk{i}", "luckin", *HZ, hours=_hours(i, round_)) for i in range(STORES)]
        reply = await cat.stub.ImportStores(iter([svc.ImportStoresRequest(stores=stores)]), metadata=cat.admin)
        assert reply.accepted == STORES
        assert len(model._HOURS_INTERN) - interned <= ROOM and len(model._ENCODED) - encoded <= ROOM
    for i in (0, STORES - 1):
        menu = await cat.stub.GetMenu(svc.GetMenuRequest(store_id=f"lk{i}"), metadata=cat.md)
        got = [(p.weekday, p.open_minute, p.close_minute) for p in menu.store.opening_hours]
        assert got == _hours(i, IMPORTS - 1)
