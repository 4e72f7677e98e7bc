"""Over real gRPC with the real catalog (conftest.py): a line put in the cart with an option the
brand then takes off its menu. Ordering the cart is refused FAILED_PRECONDITION
CART_LINE_OUTDATED naming cart.lines[0] (the cart must change; the request was fine), where it
was INVALID_ARGUMENT, which reads as a bug in the app's request."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat_svc
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.errors import error_details

STORE = "it-store-1"  # the seed of conftest.py
ITEM = "it-oat-latte"


def oat_latte(*sizes: str) -> catalog_pb2.MenuItem:
    return catalog_pb2.MenuItem(
        item_id=ITEM, brand_id="it-brand", name="测试燕麦拿铁", category="茶饮", price_fen=1800,
        option_groups=[catalog_pb2.OptionGroup(
            group_id="size", name="杯型", default_option_id="medium",
            options=[catalog_pb2.Option(option_id=o, name=o, price_delta_fen=0) for o in sizes],
        )],
    )


async def test_ordering_a_cart_whose_option_left_the_menu_is_a_failed_precondition_on_the_cart_line(stack):
    await stack.catalog.UpsertMenuItem(
        cat_svc.UpsertMenuItemRequest(request_id="oat-1", item=oat_latte("medium", "large")), metadata=stack.admin_md
    )
    line = catalog_pb2.LineSelection(item_id=ITEM, quantity=1, options=[catalog_pb2.OptionChoice(group_id="size", option_id="large")])
    await stack.order.AddCartItem(
        svc.AddCartItemRequest(request_id="add-1", user_id="olga", store_id=STORE, line=line), metadata=stack.md, timeout=5
    )
    await stack.catalog.UpsertMenuItem(
        cat_svc.UpsertMenuItemRequest(request_id="oat-2", item=oat_latte("medium")), metadata=stack.admin_md
    )
    for _ in range(50):  # the order service's quote cache learns of the change from the catalog's feed
        cart = (await stack.order.GetCart(svc.GetCartRequest(user_id="olga"), metadata=stack.md, timeout=5)).cart
        if not cart.orderable:
            break
        await asyncio.sleep(0.1)
    assert not cart.orderable

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.order.PlaceOrder(
            svc.PlaceOrderRequest(request_id="p1", user_id="olga", from_cart=True, card_use=order_pb2.CARD_USE_NONE),
            metadata=stack.md, timeout=5,
        )
    details = error_details(info.value)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert details["reason"] == "CART_LINE_OUTDATED"
    assert [field for field, _ in details["violations"]] == ["cart.lines[0]"]
    assert "OPTION_NOT_OFFERED" in details["violations"][0][1]
