"""A merchant's SetItemAvailability that races an import moving its store to another brand
(real SQLite): the grant is judged against the store's brand as the write commits, not as the
catalog's memory showed it while the import was still being written."""
import asyncio

import pytest

from services.catalog.handlers import Catalog
from services.catalog.model import Brand, MenuItem, validate_store_row
from services.catalog.store import SqliteCatalogStore
from services.common.clock import FakeClock
from services.common.errors import PermissionDenied
from services.common.merchant_grant import MerchantScope

from tests.integration.catalog.conftest import EVENING, HANGZHOU, catalog_settings

pytestmark = pytest.mark.timeout(30)


class ImportWatchedStore(SqliteCatalogStore):
    """Tells the test when an import's rows are queued in the writer (not yet in memory)."""

    def __init__(self, db) -> None:
        super().__init__(db)
        self.import_queued = asyncio.Event()

    async def upsert_stores(self, rows, now_ms):
        # Set in the same step as the write is queued: whoever wakes on it runs after the queueing.
        self.import_queued.set()
        return await super().upsert_stores(rows, now_ms)


@pytest.fixture
async def catalog(tmp_path):
    store = await ImportWatchedStore.open(catalog_settings(tmp_path).db_path)
    catalog = Catalog(store, clock=FakeClock(EVENING), resolver_factory=lambda brands, menus: None)
    await catalog.start()
    # Two brands selling an item of the same id: an id such as "latte" is common to chains.
    for brand in ("a", "b"):
        await catalog.upsert_brand(f"b-{brand}", Brand(brand, f"品牌{brand}"))
        await catalog.upsert_item(f"i-{brand}", MenuItem("latte", brand, f"{brand}的拿铁", 1500))
    await import_rows(catalog, ("s1", "a"))
    yield catalog
    await catalog.close()
    await store.close()


def row(catalog, store_id, brand_id):
    return validate_store_row(0, store_id, brand_id, store_id, "", "杭州", *HANGZHOU, (), False, "", catalog.brands)


async def import_rows(catalog, *stores):
    session = catalog.begin_import()
    await session.add([row(catalog, store_id, brand_id) for store_id, brand_id in stores])
    return await session.finish()


async def while_an_import_moves_s1_to_brand_b(catalog, act):
    """Runs `act` once the import's write is queued, while memory still shows s1 as brand a."""
    moving = asyncio.create_task(import_rows(catalog, ("s1", "b")))
    await asyncio.wait_for(catalog.store.import_queued.wait(), 5)
    assert catalog.stores["s1"].brand_id == "a"  # what the merchant's call is checked against
    try:
        return await act()
    finally:
        await moving


async def marks_of(catalog):
    stored = sorted((await catalog.store.load()).sold_out)
    in_memory = sorted((s, i) for s, items in catalog.sold_out.items() for i in items)
    return stored, in_memory


async def test_the_brand_a_store_left_cannot_mark_the_new_brands_item_of_the_same_id(catalog):
    former = MerchantScope("a-hq", frozenset({"a"}), frozenset())
    with pytest.raises(PermissionDenied) as err:
        await while_an_import_moves_s1_to_brand_b(
            catalog, lambda: catalog.set_availability("so-1", "s1", "latte", False, merchant=former)
        )
    assert err.value.reason == "STORE_NOT_YOURS"
    assert await marks_of(catalog) == ([], [])


async def test_the_brand_a_store_left_cannot_put_the_new_brands_sold_out_item_back_on_sale(catalog):
    await import_rows(catalog, ("s2", "b"))
    new_owner = MerchantScope("b-hq", frozenset({"b"}), frozenset())
    await catalog.set_availability("b-1", "s2", "latte", False, merchant=new_owner)
    former = MerchantScope("a-hq", frozenset({"a"}), frozenset())
    # Both checked against memory before the import is applied to it; both written after it:
    # the platform marks brand b's latte sold out at s1, then brand a's grant tries to undo it.
    platform, undo = await while_an_import_moves_s1_to_brand_b(
        catalog,
        lambda: asyncio.gather(
            catalog.set_availability("b-2", "s1", "latte", False),
            catalog.set_availability("so-2", "s1", "latte", True, merchant=former),
            return_exceptions=True,
        ),
    )
    assert platform is False
    assert isinstance(undo, PermissionDenied) and undo.reason == "STORE_NOT_YOURS"
    assert await marks_of(catalog) == ([("s1", "latte"), ("s2", "latte")],) * 2


async def test_a_grant_naming_the_store_itself_still_marks_it_whatever_its_brand(catalog):
    franchisee = MerchantScope("s1-franchisee", frozenset(), frozenset({"s1"}))
    await while_an_import_moves_s1_to_brand_b(
        catalog, lambda: catalog.set_availability("so-3", "s1", "latte", False, merchant=franchisee)
    )
    assert await marks_of(catalog) == ([("s1", "latte")],) * 2
