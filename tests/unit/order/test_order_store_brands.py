"""A brand grant at a store none of whose orders names its brands is judged by the store's brand
in the catalog (services/order/store_brands.py), kept a few seconds per store."""
from __future__ import annotations

import pytest

from services.common.errors import NotFound, PermissionDenied, Unavailable
from services.common.merchant_grant import MerchantScope
from services.order.store_brands import StoreBrands


class Directory:
    def __init__(self, brands):
        self.brands, self.asked, self.down = brands, 0, False

    async def store_brand(self, store_id, *, timeout):
        self.asked += 1
        if self.down:
            raise Unavailable("UPSTREAM_UNAVAILABLE", "catalog down", 100)
        if store_id not in self.brands:
            raise NotFound("STORE_NOT_FOUND", "no such store")
        return self.brands[store_id]


async def test_an_answer_is_kept_a_few_seconds_then_asked_again(world):
    directory = Directory({"s1": "tea"})
    brands = StoreBrands(directory, clock=world.clock, keep_seconds=10)
    assert [await brands.of("s1"), await brands.of("s1")] == ["tea", "tea"] and directory.asked == 1
    directory.brands["s1"] = "coffee"  # an import moved the store
    world.clock.advance(10)
    assert await brands.of("s1") == "coffee" and directory.asked == 2


async def test_errors_are_not_kept_and_the_stores_kept_are_bounded(world):
    directory = Directory({f"s{n}": "tea" for n in range(5)})
    brands = StoreBrands(directory, clock=world.clock, max_stores=3)
    for _ in range(2):
        with pytest.raises(NotFound):
            await brands.of("nowhere")
    assert directory.asked == 2
    directory.down = True
    with pytest.raises(Unavailable):
        await brands.of("s0")
    directory.down = False
    for n in range(5):
        await brands.of(f"s{n}")
    assert len(brands._known) == 3
    asked = directory.asked
    await brands.of("s4")  # the newest are kept, the oldest went
    await brands.of("s0")
    assert directory.asked == asked + 1


def rival():
    return MerchantScope("m-rival", frozenset({"rival"}), frozenset())


async def test_a_rival_is_refused_a_store_without_orders_and_its_brand_is_not(world):
    world.catalog.brands["s2"] = "rival"
    with pytest.raises(PermissionDenied) as err:
        await world.service.list_store_orders("s1", "", 10, "", merchant=rival())
    assert err.value.reason == "STORE_NOT_YOURS"
    assert await world.service.list_store_orders("s2", "", 10, "", merchant=rival()) == ([], "")


async def test_the_catalog_down_is_unavailable_not_an_empty_list(world):
    world.catalog.down = True
    with pytest.raises(Unavailable):
        await world.service.list_store_orders("s1", "", 10, "", merchant=rival())


async def test_an_answer_kept_before_the_clock_stepped_back_is_asked_again(world):
    directory = Directory({"s1": "tea"})
    brands = StoreBrands(directory, clock=world.clock, keep_seconds=10)
    assert await brands.of("s1") == "tea"
    directory.brands["s1"] = "coffee"  # an import moved the store
    world.clock.advance(-3600)  # NTP stepped the wall clock an hour back
    # Kept "until 10 s after" a time an hour ahead: an answer of unknown age, not one kept 10 s.
    assert await brands.of("s1") == "coffee" and directory.asked == 2
