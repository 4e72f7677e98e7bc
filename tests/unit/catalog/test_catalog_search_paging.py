"""A page token of SearchStores says where the last page ended, not how many stores it skipped:
stores close (their hours end, an import closes them) and open or move in between two pages of
a buyer's list, and a count of stores to skip then skipped stores never shown or showed one twice."""
import base64
import random
from datetime import datetime, timedelta, timezone

import pytest

import tests.unit.catalog.test_catalog_handlers as base
from services.catalog.handlers import MAX_SEARCH_OFFSET
from services.catalog.model import OpenClock, haversine_m, validate_store_row
from services.common.clock import FakeClock
from services.common.errors import InvalidArgument

STEP = 0.001  # ~110 m between stores


async def catalog_with_a_row_of_stores(n=6):
    catalog, _ = await base.make_catalog()
    for i in range(n):
        await base.add_store(catalog, f"s{i}", "luckin", STEP * (i + 1))
    return catalog


async def page(catalog, token="", **kw):
    hits, token = await catalog.search_stores(*base.HANGZHOU, page_size=2, page_token=token, **kw)
    return [h.store.store_id for h in hits], token


async def test_a_store_that_closes_between_two_pages_does_not_hide_the_next_one():
    catalog = await catalog_with_a_row_of_stores()
    first, token = await page(catalog, open_now=True)
    assert first == ["s0", "s1"]
    await base.add_store(catalog, "s0", "luckin", STEP, closed=True)  # closed for good by an import
    second, _ = await page(catalog, token, open_now=True)
    assert second == ["s2", "s3"]


async def test_a_store_opened_nearer_between_two_pages_does_not_repeat_one_already_shown():
    catalog = await catalog_with_a_row_of_stores()
    first, token = await page(catalog)
    await base.add_store(catalog, "new", "luckin", STEP / 2)
    second, token = await page(catalog, token)
    third, _ = await page(catalog, token)
    assert first + second + third == ["s0", "s1", "s2", "s3", "s4", "s5"]


async def test_stores_that_tie_with_the_last_one_shown_continue_on_the_next_page_by_store_id():
    catalog, _ = await base.make_catalog()
    for store_id in ("d", "b", "a", "c", "e"):
        await base.add_store(catalog, store_id, "heytea" if store_id in "bd" else "luckin", STEP)
    seen, token = [], ""
    while True:
        ids, token = await page(catalog, token)
        seen += ids
        if not token:
            break
    assert seen == ["a", "b", "c", "d", "e"]
    # And a brand's open stores the same way (its index answers open-now itself).
    first, token = await page(catalog, brand_id="luckin", open_now=True)
    second, token = await page(catalog, token, brand_id="luckin", open_now=True)
    assert (first, second, token) == (["a", "c"], ["e"], "")


def token_of(value):
    return base64.urlsafe_b64encode(f"stores:{value}".encode()).decode().rstrip("=")


async def test_a_token_of_the_previous_release_still_pages_on_by_count():
    catalog = await catalog_with_a_row_of_stores()
    ids, _ = await page(catalog, token_of("2"))
    assert ids == ["s2", "s3"]


@pytest.mark.parametrize("value", ["2:nan:s1", "2:inf:s1", "2:-1:s1", "2:x:s1", "1001:5.0:s1", "2:5.0:"])
async def test_a_crafted_token_is_refused(value):
    catalog = await catalog_with_a_row_of_stores()
    with pytest.raises(InvalidArgument) as err:
        await page(catalog, token_of(value))
    assert err.value.reason == "INVALID_PAGE_TOKEN"


async def test_a_list_ends_a_thousand_stores_deep_whatever_the_page_size():
    # The proto's promise: "A list goes at most 1,000 stores deep". Pages of 100 went to 1,100,
    # pages of 33 to 1,023: a page started at 990 stores still showed a whole page.
    catalog, _ = await base.make_catalog()
    session = catalog.begin_import()
    await session.add([
        validate_store_row(0, f"m{i:04d}", "luckin", "mall", "", "", base.HANGZHOU[0] + i * 1e-6, base.HANGZHOU[1], (), False, "",
                           catalog.brands)
        for i in range(1_150)
    ])
    await session.finish()
    for size in (100, 33, 7, 1_000):
        seen, token = [], ""
        while True:
            hits, token = await catalog.search_stores(*base.HANGZHOU, page_size=size, page_token=token)
            seen += [h.store.store_id for h in hits]
            if not token:
                break
        assert seen == [f"m{i:04d}" for i in range(MAX_SEARCH_OFFSET)], size


async def test_every_page_chain_lists_each_matching_store_once_nearest_first_as_a_brute_force_sort():
    rng = random.Random(27)
    clock = FakeClock(datetime(2026, 10, 24, tzinfo=timezone.utc))
    catalog, _ = await base.make_catalog(clock)
    timetables = [(), [(d, 540, 1380) for d in range(1, 8)], [(d, 600, 1500) for d in range(1, 8)], [(7, 1320, 2880)]]
    session = catalog.begin_import()
    await session.add([
        validate_store_row(
            i, f"s{rng.randrange(10**6):06d}-{i}", rng.choice(["luckin", "heytea"]), "s", "", "",
            base.HANGZHOU[0] + rng.choice([0.0, rng.uniform(-0.01, 0.01)]), base.HANGZHOU[1] + rng.uniform(-0.01, 0.01),
            rng.choice(timetables), rng.random() < 0.05, rng.choice(["", "Europe/Berlin", "America/New_York"]), catalog.brands,
        )
        for i in range(1_500)
    ])
    await session.finish()
    stores = list(catalog.stores.values())
    for case in range(12):
        clock.set(datetime(2026, 10, 24, tzinfo=timezone.utc) + timedelta(minutes=rng.randrange(3 * 1440)))
        ask = dict(radius_m=rng.choice([0.0, 500.0, 2000.0]), brand_id=rng.choice(["", "luckin"]), category=rng.choice(["", "茶饮"]),
                   open_now=rng.random() < 0.5, page_size=rng.choice([0, 7, 100]))
        open_clock = OpenClock(clock.now())

        def matches(s):
            return ((not ask["brand_id"] or s.brand_id == ask["brand_id"])
                    and (not ask["category"] or catalog.brands[s.brand_id].category == ask["category"])
                    and (not ask["open_now"] or open_clock.is_open(s)))

        seen, token = [], ""
        while True:
            hits, token = await catalog.search_stores(*base.HANGZHOU, page_token=token, **ask)
            seen += [(h.distance_m, h.store.store_id) for h in hits]
            if not token:
                break
        radius = ask["radius_m"] or 3_000.0
        want = sorted((d, s.store_id) for d, s in ((haversine_m(*base.HANGZHOU, s.lat, s.lng), s) for s in stores) if d <= radius and matches(s))
        assert seen == want[:MAX_SEARCH_OFFSET], (case, ask, clock.now())
