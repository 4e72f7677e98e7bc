"""WatchStoreOrders says when it follows the store (`opened`, the stream's headers), so a merchant
that lists the store after that cue misses no order: each is on the list or on the stream."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.common.merchant_grant import MerchantScope
from tests.unit.order.test_order_store_feed import place


async def test_a_store_stream_says_it_is_open_once_it_follows_the_store_before_any_order(world):
    following_when_told: list[int] = []

    async def opened() -> None:
        following_when_told.append(world.service.events.stores.open)

    feed = world.service.watch_store("s1", opened=opened)
    first = asyncio.ensure_future(feed.__anext__())
    for _ in range(100):
        if following_when_told:
            break
        await asyncio.sleep(0)
    assert following_when_told == [1]  # told once, with its watcher already subscribed
    order = await world.service.place_order(place(world, "r1", "u1"))
    assert (await first).order_id == order.order_id
    await feed.aclose()


async def test_a_stream_refused_the_store_never_says_it_is_open(world):
    await world.service.place_order(place(world, "r1", "u1"))
    told: list[bool] = []

    async def opened() -> None:
        told.append(True)

    rival = MerchantScope("rival", frozenset({"another-brand"}), frozenset())
    with pytest.raises(DomainError) as err:
        await world.service.watch_store("s1", merchant=rival, opened=opened).__anext__()
    assert err.value.reason == "STORE_NOT_YOURS" and told == []
    assert world.service.events.stores.open == 0
