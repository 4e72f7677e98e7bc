"""A from_cart placement finished (or undone) by the recovery, with no cart read in memory: the
sweep after an outage or a crash, or the caller's retry under the same request_id. Its row
remembers the cart lines it was made from, so the recovery takes those and only those: a line
the user added meanwhile stays in the cart, and lines another placement ordered meanwhile are
not ordered a second time. Rows written by the previous release (no lines remembered) empty the
cart on recovery, as they did."""
from __future__ import annotations

import pytest

from services.common.errors import DeadlineExceeded, DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection


def from_cart(request_id: str, card_use: str = model.CARD_BEST) -> PlaceOrderInput:
    return PlaceOrderInput(request_id=request_id, user_id="u1", store_id="", lines=(), card_use=card_use, card_id="", from_cart=True)


async def _left_placing_with_its_card_redeemed(world, request_id: str = "p1") -> str:
    """The card service redeems the card, but its answer never arrives (deadline) and it goes
    down before the compensation's release: the PLACING row is left for the sweep or a retry,
    its card redeemed. Returns the order id."""
    inner = world.card.reserve

    async def redeemed_then_down(**kwargs):
        await inner(**kwargs)
        world.card.down = True
        raise DeadlineExceeded("UPSTREAM_DEADLINE", "card slow")

    world.card.reserve = redeemed_then_down
    with pytest.raises(DomainError) as cut:
        await world.service.place_order(from_cart(request_id))
    assert cut.value.reason == "UPSTREAM_DEADLINE"
    await world.service.drain()  # the compensation met the card service down: deferred
    world.card.reserve = inner
    world.card.down = False
    oid = model.order_id_for("u1", request_id)
    row = await world.store.get(oid)
    assert row is not None and row.status == model.PLACING
    return oid


async def test_the_sweep_finishing_a_cart_order_keeps_a_line_added_meanwhile(world):
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    oid = await _left_placing_with_its_card_redeemed(world)
    await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")  # told: it is in the cart
    world.clock.advance(31)
    await world.service.sweep()
    done = await world.store.get(oid)
    assert done.status == model.PAID and [(l.item_id, l.quantity) for l in done.lines] == [("latte", 1)]
    # The tea is in no order: it stays in the cart.
    assert (await world.service.get_cart("u1")).selections == (Selection("tea", 2),)


async def test_the_retry_resuming_a_cart_order_keeps_a_line_added_meanwhile(world):
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    oid = await _left_placing_with_its_card_redeemed(world)
    await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")
    again = await world.service.place_order(from_cart("p1"))
    assert again.order_id == oid and again.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"
    assert (await world.service.get_cart("u1")).selections == (Selection("tea", 2),)


async def test_the_sweep_does_not_finish_a_cart_order_whose_lines_another_placement_ordered(world):
    # The user, told the first tap failed, taps again: that placement orders the cart (with the
    # second card). The sweep then finds the first one's card redeemed: finishing it would be a
    # second order of the same latte. It gives the card back instead.
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    oid = await _left_placing_with_its_card_redeemed(world)
    second = await world.service.place_order(from_cart("p2"))
    assert second.status == model.PAID
    world.clock.advance(31)
    await world.service.sweep()
    row = await world.store.get(oid)
    assert row.status == model.ABORTED and row.error[1] == "CART_EMPTY"
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [second.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]


async def test_the_retry_of_a_cart_order_whose_lines_another_placement_ordered_is_told_the_cart_is_empty(world):
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    await _left_placing_with_its_card_redeemed(world)
    second = await world.service.place_order(from_cart("p2"))
    with pytest.raises(DomainError) as again:
        await world.service.place_order(from_cart("p1"))
    assert again.value.reason == "CART_EMPTY"
    await world.service.drain()
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [second.order_id]
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]


async def test_a_placing_row_of_the_previous_release_still_empties_the_cart_on_recovery(world):
    # Written before rows remembered their cart lines: which lines it was made from is unknown,
    # so its recovery empties the cart, as that release's did.
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    oid = model.order_id_for("u1", "old")
    draft = model.Order(
        order_id=oid, request_id="old", request_hash="h", user_id="u1", store_id="s1", store_name="S", brand_id="b",
        campaign_id="spring-2026", lines=(), subtotal_fen=1500, card_use=model.CARD_BEST, requested_card_id="",
        status=model.PLACING, create_ms=0, update_ms=0, from_cart=True,
    )
    await world.store.begin_placement(draft)
    await world.card.reserve(campaign_id="x", user_id="u1", key=oid, amount_fen=1500, card_id="", ttl_seconds=0, timeout=1, redeem=True)
    await world.service.sweep(startup=True)
    assert (await world.store.get(oid)).status == model.PAID
    assert (await world.service.get_cart("u1")).selections == ()
