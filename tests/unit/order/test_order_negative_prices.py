"""A catalog answer that prices a line below zero (a menu stored before the catalog refused
option deltas that together go negative) must never become an order: it had a negative subtotal
and a payment intent for a negative amount, money paid out to the buyer through ConfirmPayment."""
from __future__ import annotations

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection


def place(request_id, lines, card_use=model.CARD_NONE):
    return PlaceOrderInput(
        request_id=request_id, user_id="u1", store_id="s1", lines=tuple(Selection(i, q) for i, q in lines), card_use=card_use,
    )


@pytest.mark.parametrize("card_use", [model.CARD_NONE, model.CARD_BEST])
async def test_a_line_priced_below_zero_is_refused_and_nothing_is_held(world, card_use):
    world.catalog.prices["broken"] = -60
    world.card.grant("c1", "u1")
    for lines in ((("broken", 1),), (("broken", 1), ("latte", 1))):
        with pytest.raises(DomainError) as info:
            await world.service.place_order(place(f"r-{len(lines)}-{card_use}", lines, card_use))
        assert (info.value.code, info.value.reason) == ("FAILED_PRECONDITION", "PRICE_INVALID")
        assert [f for f, _ in info.value.violations] == ["lines[0]"]
    await world.service.drain()
    orders, _ = await world.service.list_orders("u1", 100, "")
    assert orders == []
    assert {c.state for c in world.card.cards.values()} == {"AVAILABLE"}


async def test_a_free_line_is_still_an_order(world):
    world.catalog.prices["gift"] = 0
    order = await world.service.place_order(place("free", (("gift", 1),)))
    assert order.status == model.PAID and order.subtotal_fen == 0 and order.payment.status == model.PAY_NOT_REQUIRED
