"""The benchmark generator and the demo stores are deterministic and valid."""
from services.catalog.demo import DEMO_CITIES, demo_stores
from services.catalog.generate import generate_stores
from services.catalog.model import Rejection, validate_store_row

BRANDS = {"mixue": 1, "luckin": 1, "heytea": 1, "kfc": 1, "freshippo": 1}


def rows(stores):
    return [
        validate_store_row(i, s.store_id, s.brand_id, s.name, s.address, s.city, s.location.latitude, s.location.longitude,
                           [(p.weekday, p.open_minute, p.close_minute) for p in s.opening_hours], s.closed, s.time_zone, BRANDS)
        for i, s in enumerate(stores)
    ]


def test_the_generator_yields_the_same_valid_stores_for_the_same_seed():
    first, again = list(generate_stores(2000)), list(generate_stores(2000))
    assert first == again and len({s.store_id for s in first}) == 2000
    assert not [r for r in rows(first) if isinstance(r, Rejection)]
    assert len({s.city for s in first}) > 20 and {s.brand_id for s in first} == set(BRANDS)
    assert list(generate_stores(10, seed=1)) != list(generate_stores(10, seed=2))


def test_demo_stores_put_every_brand_in_every_city_with_valid_rows():
    names = {b: b for b in BRANDS}
    stores = list(demo_stores(list(BRANDS), names))
    assert stores == list(demo_stores(list(BRANDS), names))
    assert {(s.city, s.brand_id) for s in stores} == {(c, b) for c in DEMO_CITIES for b in BRANDS}
    assert not [r for r in rows(stores) if isinstance(r, Rejection)]
    # Some KFC never close, some tea shops run past midnight.
    assert any(s.opening_hours[0].close_minute > 1440 for s in stores)
    assert any((s.opening_hours[0].open_minute, s.opening_hours[0].close_minute) == (0, 1440) for s in stores)
