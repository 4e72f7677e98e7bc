"""AddCartItem takes one line in the field `line` (not a list): a bad line's field violations
name its paths as `line.quantity` / `line.item_id`, so an app can map them onto the request it
sent (`line[0].quantity` names no field of AddCartItemRequest). Over real gRPC (conftest.py)."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_service_pb2 as svc
from services.common.errors import error_details

STORE = "it-store-1"  # the seed of conftest.py


async def violations(stack, line):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.order.AddCartItem(
            svc.AddCartItemRequest(request_id="bad-line", user_id="vera", store_id=STORE, line=line),
            metadata=stack.md, timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(info.value)
    return details["reason"], [field for field, _ in details["violations"]]


async def test_a_bad_quantity_is_named_on_the_line_field(stack):
    line = catalog_pb2.LineSelection(item_id="it-latte", quantity=0)
    assert await violations(stack, line) == ("QUANTITY_OUT_OF_RANGE", ["line.quantity"])


async def test_a_missing_line_names_its_own_fields(stack):
    reason, fields = await violations(stack, catalog_pb2.LineSelection())
    assert (reason, fields) == ("INVALID_LINE", ["line.item_id", "line.quantity"])
