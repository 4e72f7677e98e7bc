"""Nearest-store search against a brute-force oracle: seeded random stores worldwide and where
the grid is at its edges (one city block, the poles, the antimeridian, one spot shared by many),
random queries, radii, filters and limits, and page chains followed to their end."""
import random
from datetime import datetime, timedelta, timezone

from services.catalog.geo import BrandIndex, GeoIndex
from services.catalog.model import OpenClock, StoreRecord, haversine_m, validate_hours_cached


def brute(stores, lat, lng, radius, keep=None, limit=10, after=None):
    """What nearest() must answer: every store sorted by (haversine distance, store_id), filtered."""
    hits = sorted((haversine_m(lat, lng, s.lat, s.lng), s.store_id, s) for s in stores)
    return [
        (d, s.store_id) for d, store_id, s in hits
        if d <= radius and (keep is None or keep(s)) and (after is None or (d, store_id) > after)
    ][:limit]


def ids(found):
    return [(d, s.store_id) for d, s in found]


def store(store_id, lat, lng, brand="b", hours=(), closed=False, time_zone="Asia/Shanghai"):
    return StoreRecord(store_id, brand, store_id, lat, lng, hours, closed, time_zone)


def test_a_store_near_the_pole_is_found_whatever_its_meridian():
    # Amundsen-Scott station sits on the South Pole: 200 m from a user there, a store may be on
    # any meridian, however few metres a column of the grid spans at that latitude.
    stores = [store("pole", -90.0, 0.0), store("hut", -89.999, 120.0), store("camp", -89.9985, -60.0)]
    index = GeoIndex()
    for s in stores:
        index.put(s)
    for lat, lng in ((-89.998, -119.8), (-90.0, 180.0), (-89.9995, 45.0)):
        assert ids(index.nearest(lat, lng, 300.0, limit=10)) == brute(stores, lat, lng, 300.0), (lat, lng)


def timetable(*periods):
    return validate_hours_cached(periods)[0]


# Always open, 24 h, shop hours, past midnight, weekdays only, split shifts, Sunday night alone.
TIMETABLES = [
    (), timetable(*[(d, 0, 1440) for d in range(1, 8)]), timetable(*[(d, 540, 1380) for d in range(1, 8)]),
    timetable(*[(d, 600, 1500) for d in range(1, 8)]), timetable(*[(d, 480, 1200) for d in range(1, 6)]),
    timetable(*[(d, 360, 600) for d in range(1, 8)], *[(d, 1020, 1560) for d in range(1, 8)]), timetable((7, 1320, 2880)),
]
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Pacific/Fiji", "Pacific/Auckland", "Asia/Kolkata", "America/St_Johns"]
BRANDS = "abcd"


def worldwide(rng, stores):
    return rng.uniform(-90, 90), rng.uniform(-180, 180)


def one_city_block(rng, stores):
    if stores and rng.random() < 0.2:  # a mall: several stores at the very same spot
        return stores[-1].lat, stores[-1].lng
    return 31.2304 + rng.uniform(-0.001, 0.001), 121.4737 + rng.uniform(-0.001, 0.001)


def round_the_poles(rng, stores):
    side = rng.choice([1, -1])
    return side * rng.choice([90.0, rng.uniform(89.5, 90), rng.uniform(88, 90)]), rng.choice([rng.uniform(-180, 180), 180.0, -180.0])


def near_the_poles(rng, stores):
    return rng.uniform(89.3, 89.89), rng.uniform(-180, 180)  # dense enough to be walked by rings


def astride_the_antimeridian(rng, stores):
    lat = rng.choice([rng.uniform(-70, 70), 65 + rng.uniform(-0.5, 0.5), -17.8 + rng.uniform(-0.5, 0.5), rng.uniform(85, 90)])
    return lat, rng.choice([1, -1]) * rng.uniform(179.5, 180)


def one_spot(rng, stores):
    return 22.5431, 114.0579


def sixtieth_parallel(rng, stores):
    return rng.uniform(59.5, 60.5), 10.75 + rng.uniform(-0.9, 0.9)  # where the flat estimate stops


TERRAINS = [(worldwide, 2000), (one_city_block, 5000), (round_the_poles, 1500), (near_the_poles, 3000),
            (astride_the_antimeridian, 2000), (one_spot, 300), (sixtieth_parallel, 2000)]


def random_stores(rng, where, n):
    stores = []
    for i in range(n):
        lat, lng = where(rng, stores)
        stores.append(store(f"{where.__name__[:2]}{rng.randrange(10**6):06d}-{i}", lat, lng, rng.choice(BRANDS), rng.choice(TIMETABLES),
                            rng.random() < 0.05, rng.choice(ZONES)))
    return stores


def random_query(rng, stores):
    """Near a store (on it, a few metres off, or a few tens of km off), sometimes on ±180°."""
    s = rng.choice(stores)
    offset = rng.choice([0.0, 0.002, 0.3])
    lat = max(-90.0, min(90.0, s.lat + rng.uniform(-offset, offset)))
    lng = (s.lng + rng.uniform(-offset, offset) + 180.0) % 360.0 - 180.0
    if rng.random() < 0.05:
        lng = rng.choice([180.0, -180.0])
    return lat, lng


def indexes_of(stores):
    index, brands = GeoIndex(), {b: BrandIndex() for b in BRANDS}
    for s in stores:
        index.put(s)
        brands[s.brand_id].put(s)
    return index, brands


def test_nearest_and_nearest_open_equal_a_brute_force_sort_on_every_terrain():
    rng = random.Random(20261127)
    for where, n in TERRAINS:
        stores = random_stores(rng, where, n)
        index, brands = indexes_of(stores)
        for q in range(25):
            lat, lng = random_query(rng, stores)
            radius = rng.choice([1.0, 50.0, 300.0, 3000.0, 20000.0, 50000.0, rng.uniform(1, 50000)])
            limit = rng.choice([1, 2, 11, 37, 101, 1011])
            clock = OpenClock(datetime(2026, 3, 29, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(14 * 1440)))
            brand = rng.choice(BRANDS)
            case = (where.__name__, q, lat, lng, radius, limit, clock.now)
            assert ids(index.nearest(lat, lng, radius, None, limit)) == brute(stores, lat, lng, radius, None, limit), case
            assert ids(index.nearest(lat, lng, radius, clock.is_open, limit)) == brute(stores, lat, lng, radius, clock.is_open, limit), case
            of_brand = [s for s in stores if s.brand_id == brand]
            assert ids(brands[brand].nearest(lat, lng, radius, None, limit)) == brute(of_brand, lat, lng, radius, None, limit), case
            some = {s.store_id for s in stores if rng.random() < 0.7}
            in_stock = rng.choice([None, lambda s: s.store_id in some])
            want = brute(of_brand, lat, lng, radius, lambda s: clock.is_open(s) and (in_stock is None or in_stock(s)), limit)
            assert ids(brands[brand].nearest_open(lat, lng, radius, clock, in_stock, limit)) == want, case


def test_pages_chained_after_the_last_store_shown_list_every_store_once_in_order():
    rng = random.Random(1127)
    for where, n in TERRAINS:
        stores = random_stores(rng, where, n)
        index, brands = indexes_of(stores)
        for q in range(6):
            lat, lng = random_query(rng, stores)
            radius = rng.choice([300.0, 3000.0, 50000.0])
            size = rng.choice([7, 33, 100])
            clock = OpenClock(datetime(2026, 10, 24, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(3 * 1440)))
            brand = rng.choice(BRANDS)
            find, keep = rng.choice([
                (lambda after: index.nearest(lat, lng, radius, None, size + 1, after), None),
                (lambda after: index.nearest(lat, lng, radius, clock.is_open, size + 1, after), clock.is_open),
                (lambda after: brands[brand].nearest_open(lat, lng, radius, clock, None, size + 1, after),
                 lambda s: s.brand_id == brand and clock.is_open(s)),
            ])
            seen, after = [], None
            while len(seen) < 1_000:
                page = ids(find(after))
                seen += page[:size]
                if len(page) <= size:
                    break
                after = page[size - 1]
            case = (where.__name__, q, lat, lng, radius, size)
            assert seen == brute(stores, lat, lng, radius, keep, len(seen)), case
            assert len(seen) >= min(1_000, len(brute(stores, lat, lng, radius, keep, 10**6))), case
