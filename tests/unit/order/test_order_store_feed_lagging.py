"""A merchant's stream that fell behind ends once it has delivered what it had queued, even while
orders keep coming. The lagging watcher's queue took new orders again as soon as it had room, so
a reader slower than the store's orders (a lunch rush over a poor connection) never found it
empty: the stream never ended, every order published while the queue was full was dropped
without a word, and the orders delivered after that gap looked like a complete feed."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.order.handlers import PlaceOrderInput, StoreFeed
from services.order.model import Selection


def paid(world, n: int) -> PlaceOrderInput:
    world.card.grant(f"card-{n}", f"u{n}")  # the card pays it all: PAID at once, news to the merchant
    return PlaceOrderInput(request_id=f"r{n}", user_id=f"u{n}", store_id="s1", lines=(Selection("latte", 1),))


async def test_a_lagging_stream_ends_after_its_queue_although_orders_keep_coming(world):
    world.service.events.stores = StoreFeed(depth=3)
    feed = world.service.watch_store("s1")
    first = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0)  # subscribed
    placed = [await world.service.place_order(paid(world, n)) for n in range(5)]  # 1 taken, 3 queued, 1 dropped
    delivered = [await first]
    with pytest.raises(DomainError) as err:
        # The reader takes one order for each new one the store gets: as slow as the rush.
        for n in range(5, 15):
            delivered.append(await asyncio.wait_for(feed.__anext__(), 1))
            await world.service.place_order(paid(world, n))
    assert (err.value.code, err.value.reason) == ("UNAVAILABLE", "WATCH_LAGGING")
    # What was queued before the gap, and nothing after it: the merchant lists from there.
    assert [o.order_id for o in delivered] == [o.order_id for o in placed[:4]]
    assert world.service.events.stores.open == 0
