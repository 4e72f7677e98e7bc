"""A retry (same user and request_id) that joins the placement of an impatient first attempt
while it still runs gets its order: the placement outlives the first caller's deadline for as
long as the retry waits, and the card is reserved and redeemed once."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as card_svc
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN_ONE, STORE, LATTE = "it-one", "it-store-1", "it-latte"
S = order_pb2


def place_req(rid, user):
    return svc.PlaceOrderRequest(
        request_id=rid, user_id=user, store_id=STORE, lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)],
        card_use=S.CARD_USE_BEST, campaign_id=CAMPAIGN_ONE,
    )


async def card_call_started(calls, before: int) -> None:
    for _ in range(400):
        if calls["ReserveCard"] > before:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the first attempt never called the card service")


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unary"])
async def test_a_patient_retry_joining_an_impatient_first_attempt_gets_the_order_with_one_redemption(
    stack, batched, monkeypatch
):
    if not batched:
        await stack.order_server.stop(0.5)
        monkeypatch.setenv("MIANDAN_CARD_BATCH", "0")
        await stack.start_order()
    (card_id,) = await stack.signup("ivy")
    # Warm the order->card connection (a user without cards), so the delay below holds back
    # answers, not the connection handshake.
    await stack.order.PlaceOrder(place_req("warm", "nobody"), metadata=stack.md)
    calls = stack.order_server.upstream_calls[0]
    before = calls["ReserveCard"]
    stack.proxy.delay = 0.8  # the card answers after the first caller's deadline
    first = asyncio.ensure_future(stack.order.PlaceOrder(place_req("i1", "ivy"), metadata=stack.md, timeout=0.4))
    await card_call_started(calls, before)
    # The app's retry, patient, while the first attempt's card call is still out.
    retried = (await stack.order.PlaceOrder(place_req("i1", "ivy"), metadata=stack.md, timeout=10)).order
    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await first
    assert gave_up.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert retried.status == S.ORDER_STATUS_PAID and retried.card_id == card_id and retried.payable_fen == 0
    await stack.service.drain()
    stack.proxy.delay = 0.0
    assert (await stack.cards("ivy")) == {card_id: card_pb2.CARD_STATE_REDEEMED}
    history = await stack.card.GetCardHistory(card_svc.GetCardHistoryRequest(card_id=card_id), metadata=stack.admin_md)
    causes = [e.cause for e in history.entries]
    assert causes.count("RESERVE") == 1 and causes.count("CONFIRM") == 1 and causes[-2:] == ["RESERVE", "CONFIRM"], causes
    again = (await stack.order.PlaceOrder(place_req("i1", "ivy"), metadata=stack.md, timeout=5)).order
    assert again == retried
