"""Validating one ImportStores message (up to 5,000 rows, ~60 ms) lets other calls through
between chunks of rows instead of holding the event loop for the whole message."""
import asyncio

import pytest

import tests.unit.catalog.test_catalog_handlers as base
from services.catalog.handlers import StoreImport
from services.catalog.model import MAX_STORES_PER_MESSAGE, validate_store_row
from services.common.errors import InvalidArgument


def row_validator(catalog, seen_ticks, ticks):
    def validate(index, store_id):
        seen_ticks.add(ticks[0])
        return validate_store_row(index, store_id, "luckin", store_id, "addr", "杭州", *base.HANGZHOU, (), False, "", catalog.brands)
    return validate


async def test_a_full_message_is_validated_in_chunks_that_let_other_tasks_run():
    catalog, _ = await base.make_catalog()
    ticks = [0]
    seen_ticks = set()

    async def ticker():
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        session = catalog.begin_import()
        rows = [f"s{i}" for i in range(MAX_STORES_PER_MESSAGE)]
        await session.add_message(rows, row_validator(catalog, seen_ticks, ticks))
        result = await session.finish()
    finally:
        running.cancel()
    assert result.accepted == MAX_STORES_PER_MESSAGE
    # One tick between every chunk of VALIDATE_CHUNK rows, at least.
    assert len(seen_ticks) >= MAX_STORES_PER_MESSAGE // StoreImport.VALIDATE_CHUNK


async def test_a_message_over_the_limit_is_refused_before_any_row_is_validated():
    catalog, _ = await base.make_catalog()
    session = catalog.begin_import()
    seen = set()
    await session.add_message(["a", "b"], row_validator(catalog, seen, [0]))
    seen.clear()
    with pytest.raises(InvalidArgument) as caught:
        await session.add_message([f"s{i}" for i in range(MAX_STORES_PER_MESSAGE + 1)], row_validator(catalog, seen, [0]))
    assert caught.value.reason == "TOO_MANY_STORES"
    assert caught.value.violations[0][0] == "stores"
    assert not seen
    assert set(catalog.stores) == {"a", "b"}  # the earlier message was written and indexed
