"""Two merchants acting on one store each have their own request ids. A chain's headquarters
(a brand grant) and its franchisee (a grant for the store), or a store's former and new brand,
both move the store's orders, and each picks its own ids: with one namespace per store, the
second to use "1" was refused REQUEST_ID_REUSED, and a merchant could spoil a rival's ids at a
store they share by using them first."""
from __future__ import annotations

import grpc
import pytest

from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.errors import error_details
from tests.integration.order.merchant_calls import BRAND, STORE, grant_only as grant, place


def move(stack, order, md, status, request_id):
    return stack.order.UpdateOrderStatus(svc.UpdateOrderStatusRequest(request_id=request_id, order_id=order.order_id, status=status), metadata=md)


async def test_a_franchisee_and_its_headquarters_each_use_their_own_ids_at_one_store(stack):
    hq, franchisee = grant(stack, "m-hq", brands=[BRAND]), grant(stack, "m-franchisee", stores=[STORE])
    a, b = await place(stack, "sam"), await place(stack, "tao")
    assert (await move(stack, a, hq, S.ORDER_STATUS_ACCEPTED, "1")).order.status == S.ORDER_STATUS_ACCEPTED
    assert (await move(stack, b, franchisee, S.ORDER_STATUS_ACCEPTED, "1")).order.status == S.ORDER_STATUS_ACCEPTED
    cancel = svc.CancelOrderRequest(request_id="c1", order_id=b.order_id, reason="售罄")
    assert (await stack.order.CancelOrder(cancel, metadata=franchisee)).order.status == S.ORDER_STATUS_CANCELLED
    other = svc.CancelOrderRequest(request_id="c1", order_id=a.order_id, reason="打烊")
    assert (await stack.order.CancelOrder(other, metadata=hq)).order.status == S.ORDER_STATUS_CANCELLED


async def test_a_merchants_ids_stay_its_own_across_its_grants(stack):
    order = await place(stack, "uma")
    first, renewed = grant(stack, "m-hq", brands=[BRAND]), grant(stack, "m-hq", stores=[STORE])
    assert (await move(stack, order, first, S.ORDER_STATUS_ACCEPTED, "1")).order.status == S.ORDER_STATUS_ACCEPTED
    assert (await move(stack, order, renewed, S.ORDER_STATUS_PREPARING, "2")).order.status == S.ORDER_STATUS_PREPARING
    # A retry through the renewed grant is the same merchant's: a replay, not ILLEGAL_TRANSITION.
    assert (await move(stack, order, renewed, S.ORDER_STATUS_ACCEPTED, "1")).order.status == S.ORDER_STATUS_PREPARING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await move(stack, order, renewed, S.ORDER_STATUS_READY, "1")
    assert (err.value.code(), error_details(err.value)["reason"]) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
