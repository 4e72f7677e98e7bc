"""SearchStores over the wire against a brute-force sort of what was imported, before and after
a restart: seeded random stores in a city, round the North Pole and astride the antimeridian,
with random timetables in zones that shift their clocks, searched with random filters and
followed page by page to the end of the list."""
import random
from datetime import datetime, timedelta, timezone

from miandan.catalog.v1 import catalog_service_pb2 as svc
from services.catalog.demo import load_menu
from services.catalog.model import OpenClock, StoreRecord, haversine_m, validate_hours
from services.common.clock import FakeClock
from tests.integration.catalog.conftest import store_pb

TIMETABLES = [(), [(d, 540, 1380) for d in range(1, 8)], [(d, 600, 1500) for d in range(1, 8)], [(d, 480, 1200) for d in range(1, 6)],
              [(7, 120, 150), (7, 1320, 2880)]]
ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Pacific/Fiji"]
PLACES = [
    lambda rng: (30.2741 + rng.uniform(-0.005, 0.005), 120.1551 + rng.uniform(-0.005, 0.005)),  # a few city blocks
    lambda rng: (rng.choice([90.0, rng.uniform(89.99, 90.0)]), rng.uniform(-180, 180)),  # round the North Pole
    lambda rng: (-17.8 + rng.uniform(-0.01, 0.01), rng.choice([1, -1]) * rng.uniform(179.99, 180)),  # Fiji, astride ±180°
]


def random_stores(rng, n):
    rows = []
    for i in range(n):
        lat, lng = rng.choice(PLACES)(rng)
        rows.append(dict(store_id=f"s{rng.randrange(10**6):06d}-{i}", brand_id=rng.choice(["luckin", "heytea", "mixue"]), lat=lat, lng=lng,
                         hours=rng.choice(TIMETABLES), closed=rng.random() < 0.05, time_zone=rng.choice(ZONES)))
    return rows


def record(row):
    return StoreRecord(row["store_id"], row["brand_id"], "", row["lat"], row["lng"], validate_hours(row["hours"])[0], row["closed"],
                       row["time_zone"])


async def chain(cat, request):
    seen, token = [], ""
    while True:
        request.page_token = token
        reply = await cat.stub.SearchStores(request, metadata=cat.md)
        seen += [(hit.distance_meters, hit.store.store_id, hit.open_now) for hit in reply.stores]
        token = reply.next_page_token
        if not token:
            return seen


async def test_page_chains_equal_a_brute_force_sort_of_the_imported_stores_before_and_after_a_restart(start_catalog, tmp_path):
    rng = random.Random(90)
    clock = FakeClock(datetime(2026, 10, 24, tzinfo=timezone.utc))
    cat = await start_catalog(clock=clock)
    await load_menu(cat.stub, cat.admin)
    brands = {b.brand_id: b for b in (await cat.stub.ListBrands(svc.ListBrandsRequest(page_size=100), metadata=cat.md)).brands}
    rows = random_stores(rng, 1_200)
    stores = []
    for row in rows:
        s = store_pb(row["store_id"], row["brand_id"], row["lat"], row["lng"], hours=row["hours"], closed=row["closed"])
        s.time_zone = row["time_zone"]
        stores.append(s)
    reply = await cat.stub.ImportStores(iter([svc.ImportStoresRequest(stores=stores)]), metadata=cat.admin)
    assert reply.accepted == len(rows)
    records = [record(row) for row in rows]
    cases = []
    for _ in range(15):
        lat, lng = rng.choice(PLACES)(rng)
        request = svc.SearchStoresRequest(radius_meters=rng.choice([0.0, 300.0, 5_000.0]), brand_id=rng.choice(["", "luckin"]),
                                          category=rng.choice(["", brands["heytea"].category]), open_now=rng.random() < 0.5,
                                          page_size=rng.choice([0, 9, 100]))
        request.location.latitude, request.location.longitude = lat, lng
        cases.append((datetime(2026, 10, 24, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(3 * 1440)), request))

    def brute(at, request):
        clock = OpenClock(at)
        lat, lng = request.location.latitude, request.location.longitude
        return sorted(
            (haversine_m(lat, lng, s.lat, s.lng), s.store_id, clock.is_open(s)) for s in records
            if haversine_m(lat, lng, s.lat, s.lng) <= (request.radius_meters or 3_000.0)
            and (not request.brand_id or s.brand_id == request.brand_id)
            and (not request.category or brands[s.brand_id].category == request.category)
            and (not request.open_now or clock.is_open(s))
        )[:1_000]

    answers = []
    for at, request in cases:
        clock.set(at)
        answers.append(await chain(cat, request))
        assert answers[-1] == brute(at, request), (at, request)
    await cat.server.stop(0)
    again = await start_catalog(clock=clock, data_dir=tmp_path)
    for (at, request), before in zip(cases, answers):
        clock.set(at)
        assert await chain(again, request) == before, (at, request)
