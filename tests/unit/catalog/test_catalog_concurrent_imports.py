"""Two ImportStores streams at once (an operator fixing one store while the nightly import
runs): what searches and quotes read must end as the store committed it last."""
import asyncio

import tests.unit.catalog.test_catalog_handlers as base
from services.catalog.model import validate_store_row


def row(catalog, index, store_id, brand_id, dlat=0.0):
    return validate_store_row(
        index, store_id, brand_id, store_id, "addr", "杭州", base.HANGZHOU[0] + dlat, base.HANGZHOU[1], (), False, "", catalog.brands
    )


async def test_a_store_moved_by_a_small_import_during_a_big_one_ends_in_memory_as_committed_last():
    catalog, _ = await base.make_catalog()
    # The big import commits first, then indexes its 4,000 rows in slices (letting Quote through);
    # the small one, which moves "x" to another brand, commits after it, while it indexes.
    big = catalog.begin_import()
    await big.add([row(catalog, i, f"s{i}", "luckin", i * 1e-6) for i in range(3_999)] + [row(catalog, 3_999, "x", "luckin")])
    small = catalog.begin_import()
    await small.add([row(catalog, 0, "x", "heytea")])
    await asyncio.gather(big.finish(), small.finish())

    committed = catalog.store.rows["x"].brand_id
    assert catalog.stores["x"].brand_id == committed
    hits, _ = await catalog.search_stores(*base.HANGZHOU, brand_id=committed, page_size=1)
    assert [h.store.store_id for h in hits] == ["x"]
