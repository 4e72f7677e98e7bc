"""A cart ordered by several placements at once (a double tap on "order", a flaky app sending the
same cart again under a new request_id) ends as one order, as if the taps had come one after the
other: the placements of one user's cart take turns, the first orders it, the others are told it is
empty and hold no card."""
from __future__ import annotations

import asyncio

import grpc

from miandan.card.v1 import card_pb2
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.errors import error_details

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN_ONE = "it-one"  # one sign-up card per user
CAMPAIGN_TWO = "it-two"  # two sign-up cards per user
STORE, LATTE = "it-store-1", "it-latte"  # 1500 fen

AVAILABLE, REDEEMED = card_pb2.CARD_STATE_AVAILABLE, card_pb2.CARD_STATE_REDEEMED


async def _tap_cart_ten_times(stack, user: str, campaign: str) -> tuple[list, list]:
    """One latte in the user's cart, then ten PlaceOrder{from_cart} at once: (orders, refusals)."""
    await stack.order.AddCartItem(
        svc.AddCartItemRequest(
            request_id="add-1", user_id=user, store_id=STORE, line=catalog_pb2.LineSelection(item_id=LATTE, quantity=1)
        ),
        metadata=stack.md,
    )
    outcomes = await asyncio.gather(
        *(
            stack.order.PlaceOrder(
                svc.PlaceOrderRequest(request_id=f"tap-{i}", user_id=user, from_cart=True, campaign_id=campaign),
                metadata=stack.md,
                timeout=10,
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    return [o.order for o in outcomes if not isinstance(o, BaseException)], [e for e in outcomes if isinstance(e, BaseException)]


async def test_ten_placements_of_one_cart_at_once_make_one_order_and_spend_one_card(stack):
    await stack.signup("tapper", CAMPAIGN_TWO)  # two cards: enough for two free orders
    placed, refused = await _tap_cart_ten_times(stack, "tapper", CAMPAIGN_TWO)
    assert len(placed) == 1, [(o.order_id, o.status) for o in placed]
    assert placed[0].status == order_pb2.ORDER_STATUS_PAID and placed[0].subtotal_fen == 1500
    assert all(isinstance(e, grpc.aio.AioRpcError) for e in refused), refused
    assert {(e.code(), error_details(e)["reason"]) for e in refused} == {(grpc.StatusCode.FAILED_PRECONDITION, "CART_EMPTY")}
    listed = await stack.order.ListOrders(svc.ListOrdersRequest(user_id="tapper", page_size=50), metadata=stack.md)
    assert [o.order_id for o in listed.orders] == [placed[0].order_id]
    # The refused placements gave back whatever card they had taken before they were refused.
    assert sorted((await stack.cards("tapper", CAMPAIGN_TWO)).values()) == sorted([AVAILABLE, REDEEMED])


async def test_ten_placements_of_one_cart_with_one_free_card_make_one_order_paid_by_that_card(stack):
    # Had the tap without a card (CARD_USE_BEST: full price) written first, the user would pay
    # for the latte while the card went back unspent: no one-after-the-other order of the taps
    # gives that. The taps take turns: the first orders the cart with the card. (In one process
    # the tap holding the card nearly always wrote first anyway: test_order_cart_double_tap.py
    # holds the taps where the other order shows.)
    await stack.signup("lonecard", CAMPAIGN_ONE)
    placed, refused = await _tap_cart_ten_times(stack, "lonecard", CAMPAIGN_ONE)
    assert len(placed) == 1, [(o.order_id, o.status) for o in placed]
    assert (placed[0].status, placed[0].payable_fen) == (order_pb2.ORDER_STATUS_PAID, 0), placed[0]
    assert {(e.code(), error_details(e)["reason"]) for e in refused} == {(grpc.StatusCode.FAILED_PRECONDITION, "CART_EMPTY")}
    assert list((await stack.cards("lonecard", CAMPAIGN_ONE)).values()) == [REDEEMED]
