"""A grant naming stores only is refused any other store the same way, whether that store has
orders or not. Before, a store without orders answered an empty list (a quiet stream), one with
orders STORE_NOT_YOURS: a franchisee's grant told which rival stores had taken orders."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN, STORE, OTHER_STORE, LATTE = "it-one", "it-store-1", "it-store-2", "it-latte"


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


async def test_a_store_grant_is_refused_every_other_store_alike(stack):
    md = ((MERCHANT_TOKEN_KEY, mint_grant(stack.settings.merchant_signing_key, "m-fence", stores=[STORE], clock=stack.clock)),)
    not_yours = (grpc.StatusCode.PERMISSION_DENIED, "STORE_NOT_YOURS")
    answers = []
    for _ in range(2):  # OTHER_STORE without orders, then with one
        listing = stack.order.ListStoreOrders(svc.ListStoreOrdersRequest(store_id=OTHER_STORE), metadata=md)
        stream = stack.order.WatchStoreOrders(svc.WatchStoreOrdersRequest(store_id=OTHER_STORE), metadata=md, timeout=5)
        answers.append((await refused(listing), await refused(asyncio.wait_for(stream.read(), 2))))
        await stack.signup("vic")
        await stack.order.PlaceOrder(svc.PlaceOrderRequest(
            request_id="vic-1", user_id="vic", store_id=OTHER_STORE, campaign_id=CAMPAIGN,
            lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_BEST,
        ), metadata=stack.md, timeout=5)
    assert answers == [(not_yours, not_yours)] * 2
