"""The grid index answers exactly what a brute-force scan would."""
import dataclasses
import random
import tracemalloc

from datetime import datetime, timedelta, timezone

from services.catalog.geo import MAX_TIMETABLES, BrandIndex, GeoIndex
from services.catalog.model import OpenClock, StoreRecord, haversine_m, validate_hours, validate_hours_cached


def make_stores(n, seed=1, centre=(30.27, 120.16), spread=0.2):
    rng = random.Random(seed)
    return [
        StoreRecord(f"s{i:05d}", rng.choice(["a", "b", "c"]), f"store {i}", centre[0] + rng.uniform(-spread, spread),
                    centre[1] + rng.uniform(-spread, spread), (), False, "Asia/Shanghai")
        for i in range(n)
    ]


def brute(stores, lat, lng, radius, keep, limit):
    hits = sorted((haversine_m(lat, lng, s.lat, s.lng), s.store_id, s) for s in stores)
    return [(d, s) for d, _, s in hits if d <= radius and (keep is None or keep(s))][:limit]


def test_nearest_equals_a_brute_force_scan_for_many_random_queries():
    stores = make_stores(1500)
    index = GeoIndex()
    for s in stores:
        index.put(s)
    rng = random.Random(2)
    for _ in range(30):
        lat, lng = 30.27 + rng.uniform(-0.25, 0.25), 120.16 + rng.uniform(-0.25, 0.25)
        radius = rng.choice([300.0, 2000.0, 8000.0, 50000.0])
        limit = rng.choice([1, 10, 37])
        keep = rng.choice([None, lambda s: s.brand_id == "b"])
        got = [(round(d, 6), s.store_id) for d, s in index.nearest(lat, lng, radius, keep, limit)]
        want = [(round(d, 6), s.store_id) for d, s in brute(stores, lat, lng, radius, keep, limit)]
        assert got == want


def test_moving_a_store_updates_its_cell_and_keeps_one_entry():
    index = GeoIndex()
    a = StoreRecord("a", "x", "a", 30.0, 120.0, (), False, "")
    index.put(a)
    moved = StoreRecord("a", "x", "a", 31.0, 121.0, (), False, "")
    index.put(moved, a)
    assert len(index) == 1
    assert index.nearest(30.0, 120.0, 5000) == []
    assert [s.store_id for _, s in index.nearest(31.0, 121.0, 5000)] == ["a"]


def test_search_near_the_antimeridian_and_poles_does_not_fail():
    index = GeoIndex()
    index.put(StoreRecord("e", "x", "e", 0.0, 179.999, (), False, ""))
    assert index.nearest(89.99, 0.0, 50000) == []
    assert [s.store_id for _, s in index.nearest(0.0, 179.99, 5000)] == ["e"]


def test_a_store_across_the_antimeridian_is_found_from_the_other_side():
    index = GeoIndex()
    east = StoreRecord("east", "x", "east", -17.8, 179.99, (), False, "")
    west = StoreRecord("west", "x", "west", -17.8, -179.995, (), False, "")
    edge = StoreRecord("edge", "x", "edge", -17.8, 180.0, (), False, "")
    for s in (east, west, edge):
        index.put(s)
    # -179.99 and 179.99 are 0.02° (~2.1 km at 17.8°S) apart across the meridian, not 359.98°.
    got = [(s.store_id, round(d)) for d, s in index.nearest(-17.8, -179.99, 5000)]
    assert got == [(s.store_id, round(haversine_m(-17.8, -179.99, s.lat, s.lng))) for s in (west, edge, east)]
    assert got[-1][1] < 2200
    assert [s.store_id for _, s in index.nearest(-17.8, 179.99, 5000)] == ["east", "edge", "west"]
    assert [s.store_id for _, s in index.nearest(-17.8, 180.0, 100)] == ["edge"]
    assert [s.store_id for _, s in index.nearest(-17.8, -180.0, 100)] == ["edge"]
    index.remove(edge)  # 180°E is filed with 180°W: it leaves from there
    assert [s.store_id for _, s in index.nearest(-17.8, 179.999, 5000)] == ["west", "east"]


def test_nearest_across_the_antimeridian_equals_a_brute_force_scan():
    rng = random.Random(7)
    stores = [
        StoreRecord(f"s{i:04d}", "a", f"store {i}", -17.8 + rng.uniform(-0.3, 0.3),
                    (180.0 + rng.uniform(-0.3, 0.3) + 180.0) % 360.0 - 180.0, (), False, "")
        for i in range(600)
    ]
    index = GeoIndex()
    for s in stores:
        index.put(s)
    for _ in range(30):
        lat, lng = -17.8 + rng.uniform(-0.3, 0.3), rng.choice([179.99, -179.99, 179.8, -179.7, 180.0, -180.0])
        radius = rng.choice([300.0, 3000.0, 20000.0, 50000.0])
        limit = rng.choice([1, 10, 37])
        got = [(round(d, 6), s.store_id) for d, s in index.nearest(lat, lng, radius, None, limit)]
        want = [(round(d, 6), s.store_id) for d, s in brute(stores, lat, lng, radius, None, limit)]
        assert got == want, (lat, lng, radius, limit)


def test_a_search_that_reaches_round_the_pole_lists_each_store_once():
    index = GeoIndex()
    stores = [StoreRecord(f"p{k}", "x", "p", 89.9, -180.0 + 30.0 * k, (), False, "") for k in range(12)]
    for s in stores:
        index.put(s)
    got = [s.store_id for _, s in index.nearest(89.95, 0.0, 50000, limit=50)]
    assert sorted(got) == sorted(s.store_id for s in stores)


def test_a_sparse_index_is_searched_by_its_occupied_cells_and_agrees_with_the_rings():
    stores = make_stores(200, spread=0.05)
    index = GeoIndex()
    for s in stores:
        index.put(s)
    got = [s.store_id for _, s in index.nearest(30.27, 120.16, 50000, limit=200)]
    assert got == [s.store_id for _, s in brute(stores, 30.27, 120.16, 50000, None, 200)]


def hours(open_minute, close_minute):
    return validate_hours_cached([(d, open_minute, close_minute) for d in range(1, 8)])[0]


# 24 h, shop hours, past midnight, breakfast, mall hours, a day off, and always open (no hours).
TIMETABLES = [hours(0, 1440), hours(9 * 60, 23 * 60), hours(10 * 60, 25 * 60), hours(6 * 60, 10 * 60),
              hours(7 * 60, 22 * 60), validate_hours_cached([(d, 480, 1200) for d in range(1, 6)])[0], ()]


def timetabled_stores(n, seed):
    """A brand's stores over several timetables and zones, some closed for good, some pairs at
    the very same spot (a tie nearest() breaks by store_id)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if out and rng.random() < 0.1:
            lat, lng = out[-1].lat, out[-1].lng
        else:
            lat, lng = 31.23 + rng.uniform(-0.3, 0.3), 121.47 + rng.uniform(-0.3, 0.3)
        out.append(StoreRecord(f"s{i:05d}", "b", f"store {i}", lat, lng, rng.choice(TIMETABLES), rng.random() < 0.05,
                               rng.choice(["Asia/Shanghai", "Asia/Shanghai", "Europe/London"])))
    return out


def test_nearest_open_answers_what_nearest_with_an_open_filter_answers_at_every_hour():
    stores = timetabled_stores(1200, seed=3)
    index = BrandIndex()
    for s in stores:
        index.put(s)
    rng = random.Random(4)
    # Moves, timetable changes and closings go through put(store, previous) as an import does.
    for s in rng.sample(stores, 150):
        changed = StoreRecord(s.store_id, "b", s.name, s.lat + rng.uniform(-0.01, 0.01), s.lng, rng.choice(TIMETABLES),
                              rng.random() < 0.3, s.time_zone)
        index.put(changed, s)
        stores[stores.index(s)] = changed
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng)


def assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, every_minutes=37, label=""):
    sold_out = {s.store_id for s in rng.sample(stores, len(stores) // 4)}
    start = datetime(2026, 1, 27, 16, 0, tzinfo=timezone.utc)  # Wednesday 00:00 in Shanghai
    for step in range(0, 48 * 60, every_minutes):
        clock = OpenClock(start + timedelta(minutes=step))
        lat, lng = 31.23 + rng.uniform(-0.35, 0.35), 121.47 + rng.uniform(-0.35, 0.35)
        radius = rng.choice([500.0, 5000.0, 20000.0])
        limit = rng.choice([1, 1, 3, 25])
        keep = rng.choice([None, lambda s: s.store_id not in sold_out])
        want = index.nearest(lat, lng, radius, (lambda s: clock.is_open(s) and (keep is None or keep(s))), limit)
        assert index.nearest_open(lat, lng, radius, clock, keep, limit) == want, (label, step)


def hours_of_its_own(n):
    """A timetable of the store's own, not interned: odd hours, or any new hours once
    model.MAX_REMEMBERED_TIMETABLES is reached (then not shared even when equal to another's)."""
    open_minute = (n * 97) % 1200
    return validate_hours([(d, open_minute, open_minute + 240 + n % 900) for d in range(1, 8) if d != n % 7 + 1])[0]


def timetables_of(stores):
    return len({(s.hours, s.time_zone) for s in stores if not s.closed})


def test_nearest_open_stays_nearest_with_an_open_filter_across_the_timetable_limit():
    rng = random.Random(6)
    stores = timetabled_stores(800, seed=6)
    index = BrandIndex()
    for s in stores:
        index.put(s)
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "few")

    def change(s, **fields):
        changed = dataclasses.replace(s, **fields)
        index.put(changed, s)
        stores[stores.index(s)] = changed

    # Up: a store after another gets hours of its own, through the limit and far beyond it.
    assert timetables_of(stores) < MAX_TIMETABLES
    seen = set()
    for n, s in enumerate(rng.sample([s for s in stores if not s.closed], 3 * MAX_TIMETABLES)):
        change(s, hours=hours_of_its_own(n))
        count = timetables_of(stores)
        if count in (MAX_TIMETABLES, MAX_TIMETABLES + 1) and count not in seen:
            seen.add(count)
            assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 211, f"{count} timetables")
    assert seen == {MAX_TIMETABLES, MAX_TIMETABLES + 1}
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "many")
    # Moves, closings, reopenings, removals and new stores while over the limit.
    for s in rng.sample(stores, 200):
        change(s, lat=s.lat + rng.uniform(-0.01, 0.01), closed=rng.random() < 0.3)
    for s in rng.sample(stores, 60):
        index.remove(s)
        stores.remove(s)
    for n in range(40):
        s = StoreRecord(f"new{n}", "b", "new", 31.23 + rng.uniform(-0.3, 0.3), 121.47 + rng.uniform(-0.3, 0.3),
                        rng.choice([hours_of_its_own(1000 + n), *TIMETABLES]), False, "Asia/Shanghai")
        index.put(s)
        stores.append(s)
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "many, changed")
    # Down: a new import gives every store one of the shared timetables again, some stay odd.
    for n, s in enumerate(list(stores)):
        change(s, hours=TIMETABLES[n % 3] if n % 50 else hours_of_its_own(n))
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "between the limits")
    for s in list(stores):
        if s.hours not in TIMETABLES[:3]:
            change(s, hours=TIMETABLES[3])
    for s in list(stores):  # one more import, as it comes
        change(s, lng=s.lng + rng.uniform(-0.001, 0.001))
    assert timetables_of(stores) <= 8
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "few again")
    # And up once more.
    for n, s in enumerate(rng.sample(stores, 2 * MAX_TIMETABLES)):
        change(s, hours=hours_of_its_own(2000 + n))
    assert_nearest_open_is_nearest_with_an_open_filter(index, stores, rng, 53, "many again")


def test_a_brand_with_a_timetable_per_store_weighs_about_what_its_plain_index_weighs():
    """Before, it kept an index per timetable it never searched by: with 20,000 stores of 19,400
    timetables 13 MB against 1.1 MB, and ~180 MB at 300,000 stores once hours were not shared."""
    rng = random.Random(7)
    stores = [StoreRecord(s.store_id, "b", s.name, s.lat, s.lng, hours_of_its_own(n) if n % 10 else TIMETABLES[n % 7], s.closed,
                          s.time_zone) for n, s in enumerate(timetabled_stores(4000, seed=7))]
    moved = {s.store_id: StoreRecord(s.store_id, "b", s.name, s.lat + rng.uniform(-0.02, 0.02), s.lng, hours_of_its_own(9000 + n),
                                     False, s.time_zone) for n, s in enumerate(rng.sample(stores, 500))}
    removed = rng.sample([s for s in stores if s.store_id not in moved], 500)

    def fill(index):
        for s in stores:
            index.put(s)
        for s in stores:
            if s.store_id in moved:
                index.put(moved[s.store_id], s)
        for s in removed:
            index.remove(s)
        return index

    plain, brand = traced_bytes(lambda: fill(GeoIndex())), traced_bytes(lambda: fill(BrandIndex()))
    assert brand < 1.2 * plain, (brand, plain)


def traced_bytes(build):
    """Bytes allocated while build() ran and still held when it returned."""
    tracemalloc.start()
    try:
        built = build()
        held = tracemalloc.get_traced_memory()[0]
        del built
        return held
    finally:
        tracemalloc.stop()


def test_a_tie_between_an_open_store_of_each_timetable_goes_to_the_smaller_store_id():
    # As nearest() and the pages cut from it: the smaller id first ("a" has breakfast hours,
    # closed at noon and at night).
    index = BrandIndex()
    for store_id, timetable in (("c", TIMETABLES[0]), ("a", TIMETABLES[3]), ("b", TIMETABLES[2])):
        index.put(StoreRecord(store_id, "b", store_id, 31.2, 121.4, timetable, False, "Asia/Shanghai"))
    noon, night = OpenClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)), OpenClock(datetime(2026, 1, 27, 16, 30, tzinfo=timezone.utc))
    assert [s.store_id for _, s in index.nearest_open(31.2, 121.4, 1000, noon)] == ["b"]
    assert [s.store_id for _, s in index.nearest_open(31.2, 121.4, 1000, night)] == ["b"]  # 00:30: 24 h and late night
    assert [s.store_id for _, s in index.nearest_open(31.2, 121.4, 1000, night, limit=3)] == ["b", "c"]


def test_at_night_the_closed_stores_of_a_brand_are_not_read_one_by_one(monkeypatch):
    index = BrandIndex()
    for s in timetabled_stores(1000, seed=5):
        index.put(StoreRecord(s.store_id, "b", s.name, s.lat, s.lng, TIMETABLES[1], False, "Asia/Shanghai"))
    read = []
    monkeypatch.setattr("services.catalog.geo.haversine_m", lambda *a: read.append(a) or haversine_m(*a))
    night = OpenClock(datetime(2026, 1, 27, 19, 30, tzinfo=timezone.utc))  # 03:30 in Shanghai
    assert index.nearest_open(31.23, 121.47, 20000, night) == [] and read == []
    # One store on London time (19:30 there, open) 15 km away: found, reading it alone.
    index.put(StoreRecord("london", "b", "london", 31.23 + 15 / 111.2, 121.47, TIMETABLES[1], False, "Europe/London"))
    assert [s.store_id for _, s in index.nearest_open(31.23, 121.47, 20000, night)] == ["london"]
    assert len(read) == 1


def test_a_brand_back_to_few_timetables_passes_over_its_closed_stores_at_night_again(monkeypatch):
    index = BrandIndex()
    stores = [StoreRecord(s.store_id, "b", s.name, s.lat, s.lng, TIMETABLES[1], False, "Asia/Shanghai")
              for s in timetabled_stores(1000, seed=8)]
    for s in stores:
        index.put(s)
    odd = [StoreRecord(f"odd{n}", "b", "odd", 31.23, 121.47 + n / 1000, hours_of_its_own(n), False, "Asia/Shanghai")
           for n in range(3 * MAX_TIMETABLES)]
    for s in odd:
        index.put(s)
    for s in odd:
        index.remove(s)
    for s in stores:  # the next import of the brand's stores
        index.put(StoreRecord(s.store_id, "b", s.name, s.lat, s.lng, s.hours, False, s.time_zone), s)
    read = []
    monkeypatch.setattr("services.catalog.geo.haversine_m", lambda *a: read.append(a) or haversine_m(*a))
    night = OpenClock(datetime(2026, 1, 27, 19, 30, tzinfo=timezone.utc))  # 03:30 in Shanghai
    assert index.nearest_open(31.23, 121.47, 20000, night) == [] and read == []


def test_a_shorter_answer_is_the_start_of_a_longer_one_when_stores_tie():
    # Pages are cut from answers of growing length (offset + size + 1): among stores at the same
    # distance the shorter answer must keep the ones the longer shows first (the smaller ids).
    index, brand = GeoIndex(), BrandIndex()
    for i in range(15):
        store = StoreRecord(f"m{i:02d}", "b", "mall", 31.2, 121.4, TIMETABLES[i % 3], False, "Asia/Shanghai")
        index.put(store)
        brand.put(store)
    noon = OpenClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc))
    for find in (
        lambda limit: index.nearest(31.2, 121.4, 1000, limit=limit),
        lambda limit: brand.nearest_open(31.2, 121.4, 1000, noon, limit=limit),
    ):
        longest = [s.store_id for _, s in find(15)]
        assert longest == [f"m{i:02d}" for i in range(15)]
        for limit in (1, 4, 11):
            assert [s.store_id for _, s in find(limit)] == longest[:limit]
