"""A double tap on "order my cart" with one free card: whichever order the taps take, the cart
is ordered once, with the card. The taps came one after the other as far as the user can tell,
and no such order makes the user pay full price while the card stays unspent."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection


def from_cart(request_id: str) -> PlaceOrderInput:
    return PlaceOrderInput(request_id=request_id, user_id="u1", store_id="", lines=(), card_use=model.CARD_BEST, card_id="", from_cart=True)


async def test_a_double_tap_with_one_free_card_orders_the_cart_once_with_the_card(world):
    world.card.grant("c1", "u1")
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    # Tap A stops at its Quote; tap B, if it gets that far meanwhile, takes the only card and
    # stops before writing its order.
    a_quoting, a_go = asyncio.Event(), asyncio.Event()
    b_reserved, b_go = asyncio.Event(), asyncio.Event()
    quote, reserve = world.catalog.quote, world.card.reserve
    b_key = model.order_id_for("u1", "tap-b")

    async def held_quote(store_id, selections, *, timeout):
        if not a_quoting.is_set():
            a_quoting.set()
            await a_go.wait()
        return await quote(store_id, selections, timeout=timeout)

    async def held_reserve(**kwargs):
        held = await reserve(**kwargs)
        if kwargs["key"] == b_key:
            b_reserved.set()
            await b_go.wait()
        return held

    world.catalog.quote, world.card.reserve = held_quote, held_reserve
    tap_a = asyncio.ensure_future(world.service.place_order(from_cart("tap-a")))
    await asyncio.wait_for(a_quoting.wait(), 2)
    tap_b = asyncio.ensure_future(world.service.place_order(from_cart("tap-b")))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(b_reserved.wait(), 0.3)  # B holds the card now, or is kept waiting
    a_go.set()
    placed = await asyncio.wait_for(tap_a, 2)
    b_go.set()
    with pytest.raises(DomainError) as refused:
        await asyncio.wait_for(tap_b, 2)
    await world.service.drain()
    assert refused.value.reason == "CART_EMPTY"
    # The one order of the cart has the free card: nothing to pay.
    assert (placed.status, placed.card_id, placed.payable_fen) == (model.PAID, "c1", 0)
    assert world.card.cards["c1"].state == "REDEEMED"
    orders, _ = await world.service.list_orders("u1", 10, "")
    assert [o.order_id for o in orders] == [placed.order_id]
