"""A placement from the cart takes the lines it was made from, and only those, and only if they are
still in the cart when its order is written: the interleavings of a cart ordered while the user
keeps adding to it, or ordered twice at once, end as some one-after-the-other order of the calls
would."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection


def from_cart(request_id: str, card_use: str = model.CARD_BEST) -> PlaceOrderInput:
    return PlaceOrderInput(request_id=request_id, user_id="u1", store_id="", lines=(), card_use=card_use, card_id="", from_cart=True)


def hold_first_quote(world) -> tuple[asyncio.Event, asyncio.Event]:
    """The next Quote waits until `go` is set (`held` tells it is waiting); later Quotes pass."""
    held, go = asyncio.Event(), asyncio.Event()
    inner = world.catalog.quote
    state = {"first": True}

    async def quote(store_id, selections, *, timeout):
        if state["first"]:
            state["first"] = False
            held.set()
            await go.wait()
        return await inner(store_id, selections, timeout=timeout)

    world.catalog.quote = quote
    return held, go


async def test_a_line_added_while_the_cart_is_being_ordered_stays_in_the_cart(world):
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    held, go = hold_first_quote(world)
    placing = asyncio.ensure_future(world.service.place_order(from_cart("p1")))
    await asyncio.wait_for(held.wait(), 2)  # the placement has read the cart: one latte
    added = await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")
    assert [s.item_id for s in added.selections] == ["latte", "tea"]  # the user was told the tea is in
    go.set()
    order = await asyncio.wait_for(placing, 2)
    assert [(line.item_id, line.quantity) for line in order.lines] == [("latte", 1)]
    # The tea was in no order: it is still in the cart, not thrown away with the latte.
    cart = await world.service.get_cart("u1")
    assert cart.selections == (Selection("tea", 2),)


async def test_a_cart_ordered_by_another_placement_meanwhile_is_not_ordered_again(world):
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    held, go = hold_first_quote(world)
    slow = asyncio.ensure_future(world.service.place_order(from_cart("tap-1")))
    await asyncio.wait_for(held.wait(), 2)
    first = await world.service.place_order(from_cart("tap-2"))
    assert first.status == model.PAID and (await world.service.get_cart("u1")).selections == ()
    go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(slow, 2)
    assert (refused.value.code, refused.value.reason) == ("FAILED_PRECONDITION", "CART_EMPTY")
    # One order, one card spent; the card the refused placement had redeemed is back.
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [first.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]
    # Its retry is told the same, and holds nothing either.
    await world.service.drain()
    with pytest.raises(DomainError) as again:
        await world.service.place_order(from_cart("tap-1"))
    assert again.value.reason == "CART_EMPTY"
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]


async def test_a_retried_placement_whose_cart_was_ordered_meanwhile_is_aborted_and_holds_no_card(world):
    # The first attempt is aborted with its row written (no card yet for a CARD_REQUIRED order);
    # its retry runs the saga on that row, and the cart is ordered by another placement meanwhile.
    await world.service.add_cart_item("u1", "s1", Selection("cake", 1), "a1")
    with pytest.raises(DomainError) as no_card:
        await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))
    assert no_card.value.reason == "NO_CARD_AVAILABLE"
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    held, go = hold_first_quote(world)
    retry = asyncio.ensure_future(world.service.place_order(from_cart("r1", model.CARD_REQUIRED)))
    await asyncio.wait_for(held.wait(), 2)
    other = await world.service.place_order(from_cart("r2"))
    assert other.status == model.PENDING_PAYMENT
    go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(retry, 2)
    assert refused.value.reason == "CART_EMPTY"
    await world.service.drain()
    row = await world.store.get(model.order_id_for("u1", "r1"))
    assert row is not None and row.status == model.ABORTED
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "RESERVED"]


async def _retry_refused_while_the_card_service_blinks(world):
    """A retried placement (its row written by an aborted first attempt) redeems a card, finds
    its cart ordered meanwhile, and cannot give the card back: the card service does not answer
    its release. Returns the other placement's order."""
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    with pytest.raises(DomainError):
        await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))  # no card yet: ABORTED row
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    held, go = hold_first_quote(world)
    retry = asyncio.ensure_future(world.service.place_order(from_cart("r1", model.CARD_REQUIRED)))
    await asyncio.wait_for(held.wait(), 2)
    other = await world.service.place_order(from_cart("r2"))
    assert other.status == model.PAID
    release = world.card.release

    async def blinking_release(key, *, timeout):
        world.card.release = release  # the next release goes through
        world.card.calls["ReleaseReservation"] += 1
        from services.common.errors import Unavailable

        raise Unavailable("UPSTREAM_UNAVAILABLE", "card down", 100)

    world.card.release = blinking_release
    go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(retry, 2)
    assert refused.value.reason == "CART_EMPTY"
    await world.service.drain()
    return other


async def test_a_refused_placement_whose_card_was_not_given_back_is_undone_by_the_sweep_not_finished(world):
    # The user was told the cart was empty: the sweep that finds the row must give the card
    # back, not finish the placement as a second PAID order of the same cart.
    other = await _retry_refused_while_the_card_service_blinks(world)
    world.clock.advance(31)
    await world.service.sweep()
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [other.order_id]
    row = await world.store.get(model.order_id_for("u1", "r1"))
    assert row is not None and row.status == model.ABORTED and row.error[1] == "CART_EMPTY"
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]


async def test_the_retry_of_a_refused_placement_whose_card_was_not_given_back_places_nothing(world):
    # Its retry (same request_id) is told the cart is empty, as the call before it was, and
    # gives the card back: it does not resume the placement into an order of the other's cart.
    other = await _retry_refused_while_the_card_service_blinks(world)
    with pytest.raises(DomainError) as again:
        await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))
    assert again.value.reason == "CART_EMPTY"
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [other.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]
