"""PlaceOrder from_cart when the menu changed after a line went into the cart (its item, option or
quantity taken off): the request is fine, the cart is not, so FAILED_PRECONDITION
CART_LINE_OUTDATED naming each such cart.lines[i], not the caller's INVALID_ARGUMENT. The reason
is documented where callers learn the from_cart refusals (order_service.proto)."""
from pathlib import Path

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection

PROTO = Path(__file__).resolve().parents[3] / "protos" / "miandan" / "order" / "v1" / "order_service.proto"


def from_cart(request_id="p1"):
    return PlaceOrderInput(request_id=request_id, user_id="u1", store_id="", lines=(), card_use=model.CARD_NONE, from_cart=True)


async def refusal(coro):
    with pytest.raises(DomainError) as info:
        await coro
    return info.value


async def test_a_cart_line_taken_off_the_menu_since_is_a_failed_precondition_naming_the_line(world):
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")
    del world.catalog.prices["tea"]
    err = await refusal(world.service.place_order(from_cart()))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "CART_LINE_OUTDATED")
    assert [(field, text.split(":")[0]) for field, text in err.violations] == [("cart.lines[1]", "UNKNOWN_ITEM")]
    # Nothing was ordered or taken: the user changes the cart and orders again.
    assert len((await world.service.get_cart("u1")).selections) == 2


async def test_a_world_condition_in_the_cart_still_comes_first(world):
    await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    await world.service.add_cart_item("u1", "s1", Selection("tea", 1), "a2")
    del world.catalog.prices["tea"]
    world.catalog.sold_out.add("latte")
    err = await refusal(world.service.place_order(from_cart()))
    assert (err.code, err.reason) == ("FAILED_PRECONDITION", "ITEM_SOLD_OUT")


async def test_listed_lines_the_menu_does_not_take_stay_the_callers_invalid_argument(world):
    request = PlaceOrderInput(request_id="p2", user_id="u1", store_id="s1", lines=(Selection("nope", 1),), card_use=model.CARD_NONE)
    err = await refusal(world.service.place_order(request))
    assert (err.code, err.reason, err.violations[0][0]) == ("INVALID_ARGUMENT", "UNKNOWN_ITEM", "lines[0]")


def test_the_outdated_cart_line_refusal_is_documented_on_from_cart():
    field = PROTO.read_text(encoding="utf-8").split("message PlaceOrderRequest", 1)[1].split("bool from_cart", 1)[0]
    assert model.CART_LINE_OUTDATED in field and "FAILED_PRECONDITION" in field
