"""The grid index answers exactly what a brute-force scan would."""
import random

from services.catalog.geo import GeoIndex
from services.catalog.model import StoreRecord, haversine_m


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


def test_a_sparse_index_is_searched_by_its_occupied_cells_and_agrees_with_the_rings():
    stores = make_stores(200, spread=0.05)
    index = GeoIndex()
    for s in stores:
        index.put(s)
    got = [s.store_id for _, s in index.nearest(30.27, 120.16, 50000, limit=200)]
    assert got == [s.store_id for _, s in brute(stores, 30.27, 120.16, 50000, None, 200)]
