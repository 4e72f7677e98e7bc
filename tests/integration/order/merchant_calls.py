"""What the merchant tests of the order service share: the seed's ids (those of conftest.py,
which importlib mode cannot import as a module), a placed order, and a refusal read back."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant

CAMPAIGN, STORE, OTHER_STORE, BRAND, LATTE = "it-one", "it-store-1", "it-store-2", "it-brand", "it-latte"


def grant_only(stack, merchant="m-1", **scope):
    """A merchant's whole credential: its grant, no internal token."""
    return ((MERCHANT_TOKEN_KEY, mint_grant(stack.settings.merchant_signing_key, merchant, clock=stack.clock, **scope)),)


async def place(stack, user, store=STORE):
    """A signed-up user's order of one latte at `store`, paid by its card."""
    await stack.signup(user)
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-1", user_id=user, store_id=store, campaign_id=CAMPAIGN,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_BEST,
    )
    return (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=5)).order


async def refused(call):
    """(status code name, reason) of a call that must fail."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code().name, error_details(err.value)["reason"]


async def status(stack, order, user):
    return (await stack.order.GetOrder(svc.GetOrderRequest(order_id=order.order_id, user_id=user), metadata=stack.md)).order.status
