"""Over real gRPC: user "a\\x00b" with request "c" and user "a" with request "b\\x00c" used to name the
same order (the order id hashes user id, NUL, request id), so the second placement was refused
REQUEST_ID_REUSED. Ids with control characters are now refused as bad input, naming the field.
Real card and catalog servers (conftest.py)."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.errors import error_details

STORE, LATTE = "it-store-1", "it-latte"


def place(user: str, request_id: str) -> svc.PlaceOrderRequest:
    return svc.PlaceOrderRequest(
        request_id=request_id, user_id=user, store_id=STORE,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=order_pb2.CARD_USE_NONE,
    )


async def refusal(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    d = error_details(info.value)
    return info.value.code(), d["reason"], [field for field, _ in d["violations"]]


async def test_ids_joined_around_a_nul_are_refused_instead_of_naming_one_order(stack):
    first = await refusal(stack.order.PlaceOrder(place("a\x00b", "c"), metadata=stack.md, timeout=5))
    assert first == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ID", ["user_id"])
    second = await refusal(stack.order.PlaceOrder(place("a", "b\x00c"), metadata=stack.md, timeout=5))
    assert second == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ID", ["request_id"])
    placed = (await stack.order.PlaceOrder(place("a", "b"), metadata=stack.md, timeout=5)).order
    assert placed.user_id == "a" and placed.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT


@pytest.mark.parametrize("control", ["\n", "\x7f", "\x85"])
async def test_reading_an_order_with_a_control_character_in_an_id_is_refused_naming_the_field(stack, control):
    got = await refusal(stack.order.GetOrder(svc.GetOrderRequest(order_id="ord_1", user_id=f"u{control}"), metadata=stack.md, timeout=5))
    assert got == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ID", ["user_id"])
