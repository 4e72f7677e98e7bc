"""MatchIntent at night on a catalog of generated stores (real SQLite, the real resolver, a
clock set to the hour): most stores are closed, and looking for an open one must cost about
what it costs at noon, with the answers the catalog gave before it learnt to skip closed
timetables."""
from datetime import datetime, timezone
from types import MethodType
from zoneinfo import ZoneInfo

import pytest

from services.catalog import geo, model
from services.catalog.generate import load_generated
from services.catalog.handlers import NEAR_RADIUS_M, WIDE_RADIUS_M, CLARIFY_BRANDS
from services.catalog.intent.evaluation import load_cases
from services.catalog.model import haversine_m, validate_store_row
from services.common.clock import FakeClock

from bench.catalog import DEV_SET

pytestmark = pytest.mark.timeout(90)

STORES = 3_000
NOON = datetime(2026, 1, 28, 4, 30, tzinfo=timezone.utc)  # Wednesday 12:30 in Shanghai
NIGHT = datetime(2026, 1, 27, 19, 30, tzinfo=timezone.utc)  # 03:30: only some KFC are open
SHANGHAI = (31.2304, 121.4737)
PLACES = {
    "上海": SHANGHAI, "上海郊区": (31.05, 121.25), "北京": (39.9042, 116.4074), "拉萨": (29.65, 91.1), "戈壁": (41.0, 100.0),
}
# Local times in Shanghai, a Wednesday (28) and a Sunday (1): late-night tea, the dead of night,
# KFC breakfast, Luckin opening, noon, closing.
TIMES = [(28, 0, 30), (28, 3, 30), (28, 6, 15), (28, 7, 10), (28, 7, 40), (28, 12, 30), (28, 22, 30), (28, 23, 30),
         (1, 3, 30), (1, 12, 30)]
WIDE_TEXTS = ["喝的", "随便来杯拿铁", "来杯咖啡", "奶茶", "汉堡", "来杯星巴克", "随便"]


@pytest.fixture
async def catalog(start_catalog):
    running = await start_catalog(clock=FakeClock(NOON))
    catalog = running.server.catalog
    assert await load_generated(catalog, STORES) == STORES
    await catalog.current_resolver()
    return catalog


def at(day, hour, minute):
    return datetime(2026, 1 if day > 1 else 2, day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai"))


def count_store_reads(monkeypatch):
    reads = []
    monkeypatch.setattr(geo, "haversine_m", lambda *a: reads.append(a) or haversine_m(*a))
    return reads


async def test_a_match_at_night_reads_about_as_many_stores_as_at_noon(catalog, monkeypatch):
    reads = count_store_reads(monkeypatch)
    for text in ["喝的", "随便来杯拿铁", "来一杯生椰拿铁", "蜜雪冰城柠檬水一杯"]:
        counts = {}
        for label, when in (("noon", NOON), ("night", NIGHT)):
            catalog.clock.set(when)
            reads.clear()
            await catalog.match_intent(text, *SHANGHAI, max_alternatives=2)
            counts[label] = len(reads)
        # Before: every candidate of a brand with no store open read all its stores within
        # 5 km and again within 20 km (喝的: about 400 reads here against 5 at noon).
        assert counts["night"] <= max(2 * counts["noon"], 10), (text, counts)


# The search before BrandIndex.nearest_open, kept to compare answers with.
def old_nearest_orderable(self, brand_id, items, lat, lng, clock):
    sold_out = self.sold_out

    def keep(s):
        if not clock.is_open(s):
            return False
        sold = sold_out.get(s.store_id)
        return not sold or not (sold & items)

    index = self._brand_index(brand_id)
    for radius in (NEAR_RADIUS_M, WIDE_RADIUS_M):
        found = index.nearest(lat, lng, radius, keep, limit=1)
        if found:
            return found[0]
    return None


def old_brands_nearby(self, lat, lng, clock):
    for radius in (NEAR_RADIUS_M, WIDE_RADIUS_M):
        nearest = []
        for brand_id, index in self.brand_indexes.items():
            found = index.nearest(lat, lng, radius, clock.is_open, limit=1)
            if found and brand_id in self.brands:
                nearest.append((found[0][0], self.brands[brand_id].name))
        if nearest:
            return [name for _, name in sorted(nearest)[:CLARIFY_BRANDS]]
    return []


async def old_match_intent(catalog, *args, **kw):
    catalog._nearest_orderable = MethodType(old_nearest_orderable, catalog)
    catalog._brands_nearby = MethodType(old_brands_nearby, catalog)
    try:
        return await catalog.match_intent(*args, **kw)
    finally:
        del catalog._nearest_orderable, catalog._brands_nearby


async def add_odd_stores(catalog):
    """Stores the generator does not make: on London time, closed for good, with a day off, and
    sold-out items at the stores nearest the centre of Shanghai."""
    lat, lng = SHANGHAI
    week = [(d, 7 * 60, 22 * 60) for d in range(1, 8)]
    odd = [
        ("odd-luckin-london", "luckin", lat + 0.001, lng, week, False, "Europe/London"),
        ("odd-heytea-closed", "heytea", lat, lng + 0.001, [], True, ""),
        ("odd-mixue-weekdays", "mixue", lat - 0.002, lng, [(d, 0, 1440) for d in range(1, 6)], False, ""),
        ("odd-freshippo-night", "freshippo", lat + 0.03, lng + 0.03, [(d, 1320, 1800) for d in range(1, 8)], False, ""),
    ]
    session = catalog.begin_import()
    await session.add([
        validate_store_row(n, sid, brand, sid, "上海市某路1号", "上海", la, ln, periods, closed, tz, catalog.brands)
        for n, (sid, brand, la, ln, periods, closed, tz) in enumerate(odd)
    ])
    assert (await session.finish()).accepted == len(odd)
    for brand_id, index in catalog.brand_indexes.items():
        items = list(catalog.menus[brand_id])[:4]
        for n, (_, store) in enumerate(index.nearest(lat, lng, 20_000, limit=3)):
            for item_id in items[: n + 2]:
                await catalog.set_availability(f"so-{store.store_id}-{item_id}", store.store_id, item_id, False)


async def test_the_answers_at_every_hour_and_place_are_those_of_the_full_scan(catalog):
    await add_odd_stores(catalog)
    texts = [c["text"] for c in load_cases(DEV_SET) if c["text"]][::2] + WIDE_TEXTS
    compared, matched = await compare_with_the_full_scan(catalog, PLACES, texts)
    # The comparison saw both kinds of answer, not only clarifications.
    assert compared == len(TIMES) * len(PLACES) * len(texts) and compared / 4 < matched < compared * 3 / 4


async def compare_with_the_full_scan(catalog, places, texts, label=""):
    compared = matched = 0
    for day, hour, minute in TIMES:
        catalog.clock.set(at(day, hour, minute))
        for place, (lat, lng) in places.items():
            for n, text in enumerate(texts):
                alternatives = n % 3
                new = await catalog.match_intent(text, lat, lng, max_alternatives=alternatives)
                old = await old_match_intent(catalog, text, lat, lng, max_alternatives=alternatives)
                assert new == old, (label, day, hour, minute, place, text)
                compared += 1
                matched += new.matched
    return compared, matched


async def reimport(catalog, brand_id, change):
    """A new import of every store of the brand: change(n, store) gives the row's (brand_id,
    lat, periods, closed)."""
    stores = sorted((s for s in catalog.stores.values() if s.brand_id == brand_id), key=lambda s: s.store_id)
    session = catalog.begin_import()
    rows = []
    for n, s in enumerate(stores):
        brand, lat, periods, closed = change(n, s)
        rows.append(validate_store_row(n, s.store_id, brand, s.name, "上海市某路1号", "上海", lat, s.lng, periods, closed, s.time_zone,
                                       catalog.brands))
    await session.add(rows)
    assert (await session.finish()).accepted == len(stores)


def periods_of(store):
    return [(p.weekday, p.open_minute, p.close_minute) for p in store.hours]


async def night_reads(catalog, reads, text):
    catalog.clock.set(NIGHT)
    reads.clear()
    await catalog.match_intent(text, *SHANGHAI, max_alternatives=2)
    return len(reads)


async def test_a_brand_over_the_timetable_limit_and_back_gives_the_answers_of_the_full_scan(catalog, monkeypatch):
    """Once model.MAX_REMEMBERED_TIMETABLES is reached, the new hours of an import are not shared:
    each store has a timetable of its own, and its brand index keeps no split by timetable
    (it weighed ten times the index). The answers stay those of the full scan, over the limit,
    while stores move, close and leave the brand there, and once the brand is back to one
    timetable, when the night search again passes over its closed stores."""
    await add_odd_stores(catalog)
    reads = count_store_reads(monkeypatch)
    places = {"上海": SHANGHAI, "上海郊区": PLACES["上海郊区"]}
    texts = ["随便来杯拿铁", "来杯咖啡", "来一杯生椰拿铁", "喝的", "随便", "来杯星巴克"]
    few = await night_reads(catalog, reads, "随便来杯拿铁")
    week = [(d, 7 * 60 + 15, 22 * 60) for d in range(1, 8)]  # hours not seen yet

    def move_close_rebrand(n, s):
        if n % 40 == 0:
            return "heytea", s.lat, periods_of(s), s.closed
        return "luckin", s.lat + (0.002 if n % 3 == 0 else 0), week if n % 5 else [(d, 0, 1440) for d in range(1, 8)], n % 7 == 0

    with monkeypatch.context() as full:
        full.setattr(model, "MAX_REMEMBERED_TIMETABLES", len(model._HOURS_INTERN))
        await reimport(catalog, "luckin", lambda n, s: ("luckin", s.lat, week, s.closed))
        # The test did take luckin over the limit: at 03:30 every luckin store within reach is read.
        assert await night_reads(catalog, reads, "随便来杯拿铁") > 10 * max(few, 1)
        await compare_with_the_full_scan(catalog, places, texts, "over the limit")
        await reimport(catalog, "luckin", move_close_rebrand)
        await compare_with_the_full_scan(catalog, places, texts, "over the limit, changed")
    await reimport(catalog, "luckin", lambda n, s: ("luckin", s.lat, [(d, 7 * 60, 22 * 60) for d in range(1, 8)], n % 7 == 0))
    await compare_with_the_full_scan(catalog, places, texts, "back to one timetable")
    assert await night_reads(catalog, reads, "随便来杯拿铁") <= max(2 * few, 10)


async def test_searching_a_brand_open_now_at_night_reads_its_open_stores_only_and_finds_the_same(catalog, monkeypatch):
    await add_odd_stores(catalog)
    reads = count_store_reads(monkeypatch)
    lat, lng = SHANGHAI
    for day, hour, minute in TIMES:
        catalog.clock.set(at(day, hour, minute))
        clock = geo_clock(catalog)
        for brand_id, index in catalog.brand_indexes.items():
            for category in ("", catalog.brands[brand_id].category):
                hits, _ = await catalog.search_stores(
                    lat, lng, radius_m=50_000, brand_id=brand_id, category=category, open_now=True, page_size=25
                )
                full = index.nearest(lat, lng, 50_000, clock.is_open, limit=26)[:25]
                assert [(h.distance_m, h.store.store_id) for h in hits] == [(d, s.store_id) for d, s in full], (brand_id, hour)
    # At 03:30 the brands whose every timetable is closed are not read at all.
    catalog.clock.set(NIGHT)
    reads.clear()
    for brand_id in catalog.brand_indexes:
        await catalog.search_stores(lat, lng, radius_m=50_000, brand_id=brand_id, open_now=True, page_size=25)
    at_night = len(reads)
    reads.clear()
    for index in catalog.brand_indexes.values():  # as the search went before
        index.nearest(lat, lng, 50_000, geo_clock(catalog).is_open, limit=26)
    assert at_night * 4 < len(reads), (at_night, len(reads))


def geo_clock(catalog):
    from services.catalog.model import OpenClock

    return OpenClock(catalog.clock.now())
