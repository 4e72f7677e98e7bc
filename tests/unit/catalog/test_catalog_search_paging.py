"""A page token of SearchStores says where the last page ended, not how many stores it skipped:
stores close (their hours end, an import closes them) and open or move in between two pages of
a buyer's list, and a count of stores to skip then skipped stores never shown or showed one twice."""
import base64

import pytest

import tests.unit.catalog.test_catalog_handlers as base
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
