"""A store's feed of order changes (WatchStoreOrders): a watcher gets every visible change of its
store's orders, in order; one that falls behind is told so instead of silently missing orders;
the number of open streams is bounded."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.common.merchant_grant import MerchantScope
from services.order.handlers import STREAMS_PER_MERCHANT_STORE, PlaceOrderInput, StoreFeed
from services.order.model import Selection


def place(world, request_id: str, user: str, store: str = "s1") -> PlaceOrderInput:
    """An order the user's card pays in full: PAID at once, so a merchant's to make (the feed
    carries no order still waiting for its payment)."""
    world.card.grant(f"card-{user}-{request_id}", user)
    return PlaceOrderInput(request_id=request_id, user_id=user, store_id=store, lines=(Selection("latte", 1),))


async def test_a_watcher_gets_each_visible_change_of_its_store_in_order(world):
    feed = world.service.watch_store("s1")
    first = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0)  # subscribed
    a = await world.service.place_order(place(world, "r1", "u1"))
    await world.service.place_order(place(world, "r2", "u2", store="s2"))
    b = await world.service.place_order(place(world, "r3", "u3"))
    got = [await first, await feed.__anext__()]
    assert [o.order_id for o in got] == [a.order_id, b.order_id]  # no PLACING row, no other store
    await world.service.cancel_order(a.order_id, "u1", "changed my mind")
    assert (await feed.__anext__()).status == "CANCELLED"
    await feed.aclose()
    assert world.service.events.stores.open == 0


async def test_a_watcher_that_falls_behind_is_ended_after_what_it_had(world):
    world.service.events.stores = StoreFeed(depth=3)
    feed = world.service.watch_store("s1")
    first = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0)
    for n in range(6):
        await world.service.place_order(place(world, f"r{n}", f"u{n}"))
    delivered = [await first]
    with pytest.raises(DomainError) as err:
        while True:
            delivered.append(await feed.__anext__())
    assert (err.value.code, err.value.reason) == ("UNAVAILABLE", "WATCH_LAGGING")
    # What was queued arrived first: the first order, then a full queue of 3.
    assert len({o.order_id for o in delivered}) == 4
    assert world.service.events.stores.open == 0


async def test_a_grant_gets_only_the_orders_it_covers(world):
    order = await world.service.place_order(place(world, "r1", "u1"))
    rival = MerchantScope("rival", frozenset({"another-brand"}), frozenset())
    own = MerchantScope("hq", frozenset({order.brand_id}), frozenset())
    feed = StoreFeed()
    theirs, mine = feed.subscribe("s1", rival), feed.subscribe("s1", own)
    feed.publish(order)
    assert theirs.queue.empty() and mine.queue.get_nowait() == order
    # Through the service, a store whose orders name another brand is refused outright.
    with pytest.raises(DomainError) as err:
        await world.service.watch_store("s1", merchant=rival).__anext__()
    assert err.value.reason == "STORE_NOT_YOURS"
    assert world.service.events.stores.open == 0


async def test_open_streams_are_bounded():
    feed = StoreFeed(max_watchers=2)
    feed.subscribe("s1", None)
    w = feed.subscribe("s2", None)
    with pytest.raises(DomainError) as err:
        feed.subscribe("s3", None)
    assert (err.value.code, err.value.reason) == ("UNAVAILABLE", "OVERLOADED")
    feed.unsubscribe("s2", w)
    feed.unsubscribe("s2", w)  # twice is harmless
    assert feed.open == 1
    feed.subscribe("s3", None)


async def test_an_order_waiting_for_its_payment_is_not_sent_nor_its_lapse(world):
    feed = world.service.watch_store("s1")
    first = asyncio.ensure_future(feed.__anext__())
    await asyncio.sleep(0)
    unpaid = await world.service.place_order(PlaceOrderInput(request_id="r0", user_id="u0", store_id="s1", lines=(Selection("latte", 1),)))
    assert unpaid.status == "PENDING_PAYMENT"
    await world.service.cancel_order(unpaid.order_id, "u0", "changed my mind")
    paid = await world.service.place_order(place(world, "r1", "u1"))
    assert (await first).order_id == paid.order_id
    await feed.aclose()


async def test_one_merchant_cannot_take_every_stream_slot():
    feed = StoreFeed(max_watchers=100)
    hq = MerchantScope("hq", frozenset({"b"}), frozenset())
    other = MerchantScope("other", frozenset({"c"}), frozenset())
    held = [feed.subscribe("s1", hq) for _ in range(STREAMS_PER_MERCHANT_STORE)]
    with pytest.raises(DomainError) as err:
        feed.subscribe("s1", hq)
    assert (err.value.code, err.value.reason) == ("RESOURCE_EXHAUSTED", "TOO_MANY_WATCHES")
    # Another merchant, and the platform's credential, still get the store.
    feed.subscribe("s1", other)
    feed.subscribe("s1", None)
    # Over all its stores a merchant holds a quarter of the process.
    for n in range(25 - STREAMS_PER_MERCHANT_STORE):
        held.append(feed.subscribe(f"s{n + 2}", hq))
    with pytest.raises(DomainError) as err:
        feed.subscribe("s-last", hq)
    assert err.value.reason == "TOO_MANY_WATCHES"
    # A closed stream gives its place back, to that store and to the merchant's share.
    feed.unsubscribe("s1", held[0])
    feed.subscribe("s1", hq)
    assert feed.open == 25 + 2
