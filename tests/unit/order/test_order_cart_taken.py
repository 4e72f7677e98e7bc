"""A placement from the cart takes the lines it was made from, and only those, and only if they are
still in the cart when its order is written: the interleavings of a cart ordered while the user
keeps adding to it, clears it, or orders it twice at once, end as some one-after-the-other order
of the calls would. Two placements of one user's cart take turns (test_order_cart_double_tap.py);
what takes the lines under a placement is then ClearCart (or the recovery of an earlier one)."""
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


async def test_a_second_placement_of_the_cart_waits_for_the_first_and_is_told_the_cart_is_empty(world):
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    held, go = hold_first_quote(world)
    slow = asyncio.ensure_future(world.service.place_order(from_cart("tap-1")))
    await asyncio.wait_for(held.wait(), 2)
    second = asyncio.ensure_future(world.service.place_order(from_cart("tap-2")))
    await asyncio.sleep(0.05)
    assert not second.done() and world.card.calls["ReserveCard"] == 0  # waiting its turn
    go.set()
    first = await asyncio.wait_for(slow, 2)
    assert first.status == model.PAID and (await world.service.get_cart("u1")).selections == ()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(second, 2)
    assert (refused.value.code, refused.value.reason) == ("FAILED_PRECONDITION", "CART_EMPTY")
    # One order, one card spent; the second placement never took a card.
    assert world.card.calls["ReserveCard"] == 1
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [first.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]
    # Its retry is told the same, and holds nothing either.
    await world.service.drain()
    with pytest.raises(DomainError) as again:
        await world.service.place_order(from_cart("tap-2"))
    assert again.value.reason == "CART_EMPTY"
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]


async def test_a_second_placement_waits_only_until_its_deadline(world):
    from services.order.handlers import Budget

    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    held, go = hold_first_quote(world)
    slow = asyncio.ensure_future(world.service.place_order(from_cart("tap-1")))
    await asyncio.wait_for(held.wait(), 2)
    with pytest.raises(DomainError) as late:
        await world.service.place_order(from_cart("tap-2"), Budget(0.1))
    assert (late.value.code, late.value.reason) == ("DEADLINE_EXCEEDED", "DEADLINE_PASSED")
    go.set()
    assert (await asyncio.wait_for(slow, 2)).status == model.PENDING_PAYMENT
    await world.service.drain()


@pytest.mark.parametrize("add_after_clear", [False, True])
async def test_a_cart_cleared_while_it_is_being_ordered_is_not_ordered(world, add_after_clear):
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    held, go = hold_first_quote(world)
    slow = asyncio.ensure_future(world.service.place_order(from_cart("tap-1")))
    await asyncio.wait_for(held.wait(), 2)
    await world.service.clear_cart("u1")
    if add_after_clear:
        await world.service.add_cart_item("u1", "s1", Selection("tea", 1), "a2")
    go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(slow, 2)
    assert refused.value.reason == ("CART_CHANGED" if add_after_clear else "CART_EMPTY")
    await world.service.drain()
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert orders == []
    assert world.card.cards["c1"].state == "AVAILABLE"  # the card it had redeemed is back
    expected = (Selection("tea", 1),) if add_after_clear else ()
    assert (await world.service.get_cart("u1")).selections == expected


async def test_a_retried_placement_whose_cart_was_cleared_meanwhile_is_aborted_and_holds_no_card(world):
    # The first attempt is aborted with its row written (no card yet for a CARD_REQUIRED order);
    # its retry runs the saga on that row, and the cart is cleared meanwhile.
    await world.service.add_cart_item("u1", "s1", Selection("cake", 1), "a1")
    with pytest.raises(DomainError) as no_card:
        await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))
    assert no_card.value.reason == "NO_CARD_AVAILABLE"
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    held, go = hold_first_quote(world)
    retry = asyncio.ensure_future(world.service.place_order(from_cart("r1", model.CARD_REQUIRED)))
    await asyncio.wait_for(held.wait(), 2)
    await world.service.clear_cart("u1")
    go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(retry, 2)
    assert refused.value.reason == "CART_EMPTY"
    await world.service.drain()
    row = await world.store.get(model.order_id_for("u1", "r1"))
    assert row is not None and row.status == model.ABORTED
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "AVAILABLE"]


async def _retry_refused_while_the_card_service_blinks(world):
    """A retried placement (its row written by an aborted first attempt) redeems a card, finds
    its cart cleared and filled again meanwhile, and cannot give the card back: the card service
    does not answer its release."""
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    with pytest.raises(DomainError):
        await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))  # no card yet: ABORTED row
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    held, go = hold_first_quote(world)
    retry = asyncio.ensure_future(world.service.place_order(from_cart("r1", model.CARD_REQUIRED)))
    await asyncio.wait_for(held.wait(), 2)
    await world.service.clear_cart("u1")
    await world.service.add_cart_item("u1", "s1", Selection("tea", 1), "a2")
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
    assert refused.value.reason == "CART_CHANGED"
    await world.service.drain()


async def test_a_refused_placement_whose_card_was_not_given_back_is_undone_by_the_sweep_not_finished(world):
    # The user was told the cart changed: the sweep that finds the row must give the card back,
    # not finish the placement as an order the user was told failed.
    await _retry_refused_while_the_card_service_blinks(world)
    world.clock.advance(31)
    await world.service.sweep()
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert orders == []
    row = await world.store.get(model.order_id_for("u1", "r1"))
    assert row is not None and row.status == model.ABORTED and row.error[1] == "CART_CHANGED"
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "AVAILABLE"]
    assert (await world.service.get_cart("u1")).selections == (Selection("tea", 1),)


async def test_the_retry_of_a_refused_placement_whose_card_was_not_given_back_places_nothing(world):
    # Its retry (same request_id) gives the card back: it does not resume the placement into an
    # order of the cleared latte. It goes on as a new attempt, of the cart as it is now (the tea).
    await _retry_refused_while_the_card_service_blinks(world)
    again = await world.service.place_order(from_cart("r1", model.CARD_REQUIRED))
    assert [(l.item_id, l.quantity) for l in again.lines] == [("tea", 1)] and again.attempt == 2
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [again.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]
    assert (await world.service.get_cart("u1")).selections == ()
