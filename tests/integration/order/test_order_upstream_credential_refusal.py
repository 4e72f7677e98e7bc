"""The order service mid-rotation of MIANDAN_INTERNAL_TOKEN: it already has the new token, the
catalog and card services still expect the old one and refuse its calls. Nothing the caller sent
is wrong and it passes once the rotation is done, so a placement answers UNAVAILABLE /
UPSTREAM_UNAVAILABLE with a retry delay (not INTERNAL), and the same request placed again after
the rotation is an order. Real card and catalog servers (conftest.py)."""
from __future__ import annotations

from dataclasses import replace

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.auth import internal_metadata
from services.common.errors import error_details

CAMPAIGN_ONE, STORE, LATTE = "it-one", "it-store-1", "it-latte"


def place(rid: str, user: str) -> svc.PlaceOrderRequest:
    return svc.PlaceOrderRequest(
        request_id=rid, user_id=user, store_id=STORE, campaign_id=CAMPAIGN_ONE,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=order_pb2.CARD_USE_BEST,
    )


async def restart_order(stack, settings) -> None:
    await stack.order_server.stop(0.5)
    stack.settings = settings
    await stack.start_order()


async def test_a_placement_while_the_upstreams_refuse_the_rotated_token_is_unavailable_and_places_after_the_rotation(stack):
    (card_id,) = await stack.signup("rita")
    old = stack.settings
    rotated = replace(old, internal_token="the-next-internal-token")
    await restart_order(stack, rotated)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.order.PlaceOrder(place("r1", "rita"), metadata=internal_metadata(rotated), timeout=5)
    details = error_details(info.value)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert details["reason"] == "UPSTREAM_UNAVAILABLE" and details["retry_after_ms"] == 1000
    assert "credential" not in details["message"].lower()

    # The rotation completes (here: the order service back on the token its upstreams expect).
    await restart_order(stack, old)
    placed = (await stack.order.PlaceOrder(place("r1", "rita"), metadata=internal_metadata(old), timeout=5)).order
    assert placed.status == order_pb2.ORDER_STATUS_PAID and placed.card_id == card_id
