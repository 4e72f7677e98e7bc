"""UpdateOrderStatus, CancelOrder and ConfirmPayment take request_id as an idempotency key: a
replay of a call that succeeded succeeds again (answered with the order as it is now, even once
the order has moved on), and the same key with other content (another order, status, note,
reason or payment reference) is ALREADY_EXISTS REQUEST_ID_REUSED, with nothing applied. Keys are
scoped by the user for a buyer's call and by the order's store for a merchant's call.

Over real gRPC with the real card and catalog servers in-process (conftest.py) and the order
store on SQLite."""
from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import INTERNAL_TOKEN_KEY, MERCHANT_TOKEN_KEY
from services.common.errors import error_details
from services.common.merchant_grant import mint_grant

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN_ONE, STORE, OTHER_STORE, LATTE = "it-one", "it-store-1", "it-store-2", "it-latte"
REUSED = ("ALREADY_EXISTS", "REQUEST_ID_REUSED")
ACCEPTED, PREPARING, READY = S.ORDER_STATUS_ACCEPTED, S.ORDER_STATUS_PREPARING, S.ORDER_STATUS_READY


async def paid_order(stack, user, store=STORE):
    """A PAID order (the user's sign-up card covers a latte)."""
    await stack.signup(user)
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-place", user_id=user, store_id=store, campaign_id=CAMPAIGN_ONE,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_BEST,
    )
    order = (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=10)).order
    assert order.status == S.ORDER_STATUS_PAID
    return order


async def unpaid_order(stack, user, n):
    """A PENDING_PAYMENT order (no card): the user's n-th."""
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-place-{n}", user_id=user, store_id=STORE, campaign_id=CAMPAIGN_ONE,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_NONE,
    )
    order = (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=10)).order
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT and order.payment.payment_reference
    return order


def as_merchant(stack, merchant, **scope):
    grant = mint_grant(stack.settings.merchant_signing_key, merchant, clock=stack.clock, **scope)
    return ((INTERNAL_TOKEN_KEY, stack.settings.internal_token), (MERCHANT_TOKEN_KEY, grant))


def update(stack, order_id, status, rid, note="", md=None):
    return stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id=rid, order_id=order_id, status=status, note=note),
        metadata=md or stack.merchant_md, timeout=10,
    )


def cancel(stack, order_id, rid, user="", reason="", md=None):
    return stack.order.CancelOrder(
        svc.CancelOrderRequest(request_id=rid, order_id=order_id, user_id=user, reason=reason),
        metadata=md or (stack.md if user else stack.merchant_md), timeout=10,
    )


def pay(stack, order, rid, user, reference=None):
    return stack.order.ConfirmPayment(
        svc.ConfirmPaymentRequest(
            request_id=rid, order_id=order.order_id, user_id=user,
            payment_reference=order.payment.payment_reference if reference is None else reference,
        ),
        metadata=stack.md, timeout=10,
    )


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code().name, error_details(err.value)["reason"]


async def get(stack, order):
    return (await stack.order.GetOrder(svc.GetOrderRequest(order_id=order.order_id, user_id=order.user_id), metadata=stack.md)).order


def statuses(order):
    return [h.status for h in order.history]


async def race(calls):
    """(successes, Counter of (code, reason) of the failures); anything but an RPC error raises."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[(r.code().name, error_details(r)["reason"])] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r.order)
    return answers, reasons


# --- UpdateOrderStatus ---------------------------------------------------------------------


async def test_a_status_update_replayed_after_the_order_moved_on_answers_the_order_as_it_is(stack):
    a = await paid_order(stack, "amy")
    assert (await update(stack, a.order_id, ACCEPTED, "u1")).order.status == ACCEPTED
    assert (await update(stack, a.order_id, PREPARING, "u2")).order.status == PREPARING
    # The terminal's retry of the timed-out "u1": the call had succeeded, so it succeeds.
    replay = (await update(stack, a.order_id, ACCEPTED, "u1")).order
    assert replay.status == PREPARING and replay.order_id == a.order_id
    assert statuses(replay) == [S.ORDER_STATUS_PAID, ACCEPTED, PREPARING]  # nothing applied twice
    assert (await update(stack, a.order_id, READY, "u3", note="叫号 12")).order.status == READY
    assert (await update(stack, a.order_id, PREPARING, "u2")).order.status == READY
    assert statuses(await get(stack, a)) == [S.ORDER_STATUS_PAID, ACCEPTED, PREPARING, READY]


async def test_a_status_update_request_id_reused_for_another_order_or_content_is_refused(stack):
    a, b = await paid_order(stack, "ben"), await paid_order(stack, "cat")
    await update(stack, a.order_id, ACCEPTED, "u1")
    assert await refused(update(stack, b.order_id, ACCEPTED, "u1")) == REUSED
    assert await refused(update(stack, a.order_id, PREPARING, "u1")) == REUSED
    assert await refused(update(stack, a.order_id, ACCEPTED, "u1", note="again")) == REUSED
    assert (await get(stack, b)).status == S.ORDER_STATUS_PAID  # untouched
    assert statuses(await get(stack, a)) == [S.ORDER_STATUS_PAID, ACCEPTED]


async def test_a_refused_status_update_does_not_use_up_its_request_id(stack):
    a = await paid_order(stack, "dan")
    assert await refused(update(stack, a.order_id, READY, "u1")) == ("FAILED_PRECONDITION", "ILLEGAL_TRANSITION")
    assert (await update(stack, a.order_id, ACCEPTED, "u1")).order.status == ACCEPTED
    # Without a request_id nothing is remembered, as before.
    b = await paid_order(stack, "dee")
    assert (await update(stack, b.order_id, ACCEPTED, "")).order.status == ACCEPTED
    assert (await update(stack, a.order_id, PREPARING, "")).order.status == PREPARING


async def test_merchant_request_ids_are_scoped_by_the_orders_store(stack):
    a, c = await paid_order(stack, "eve", STORE), await paid_order(stack, "fay", OTHER_STORE)
    one, two = as_merchant(stack, "m-one", stores=[STORE]), as_merchant(stack, "m-two", stores=[OTHER_STORE])
    assert (await update(stack, a.order_id, ACCEPTED, "u1", md=one)).order.status == ACCEPTED
    # Another store's merchant picked the same id for its own order: its own request.
    assert (await update(stack, c.order_id, ACCEPTED, "u1", md=two)).order.status == ACCEPTED
    # A merchant learns nothing of another store's keys: its order is missing to it.
    assert await refused(update(stack, a.order_id, ACCEPTED, "u1", md=two)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    assert (await update(stack, a.order_id, ACCEPTED, "u1", md=one)).order.status == ACCEPTED


async def test_twenty_concurrent_status_updates_under_one_request_id_apply_one(stack):
    a, b = await paid_order(stack, "gus"), await paid_order(stack, "hal")
    variants = [(a.order_id, ""), (b.order_id, ""), (a.order_id, "note"), (b.order_id, "note")]
    answers, reasons = await race(
        update(stack, variants[i % 4][0], ACCEPTED, "u1", note=variants[i % 4][1]) for i in range(20)
    )
    assert set(reasons) <= {REUSED}, reasons
    assert len(answers) == 5 and sum(reasons.values()) == 15  # the winner's five calls, as replays
    (winner,) = {o.order_id for o in answers}
    now = {o.order_id: await get(stack, o) for o in (a, b)}
    assert statuses(now[winner]) == [S.ORDER_STATUS_PAID, ACCEPTED]
    (loser,) = set(now) - {winner}
    assert now[loser].status == S.ORDER_STATUS_PAID


# --- CancelOrder ---------------------------------------------------------------------------


async def test_a_buyers_cancel_request_id_names_one_cancellation(stack):
    a, b = await unpaid_order(stack, "ivy", 1), await unpaid_order(stack, "ivy", 2)
    assert (await cancel(stack, a.order_id, "c1", user="ivy", reason="点错了")).order.status == S.ORDER_STATUS_CANCELLED
    replay = (await cancel(stack, a.order_id, "c1", user="ivy", reason="点错了")).order
    assert replay.status == S.ORDER_STATUS_CANCELLED and replay.cancel_reason == "点错了"
    assert await refused(cancel(stack, b.order_id, "c1", user="ivy", reason="点错了")) == REUSED
    assert await refused(cancel(stack, a.order_id, "c1", user="ivy", reason="another")) == REUSED
    assert (await get(stack, b)).status == S.ORDER_STATUS_PENDING_PAYMENT
    # Another user's c1 is that user's own request.
    other = await unpaid_order(stack, "jon", 1)
    assert (await cancel(stack, other.order_id, "c1", user="jon", reason="点错了")).order.status == S.ORDER_STATUS_CANCELLED


async def test_a_merchants_cancel_request_id_reused_on_another_order_of_the_store_is_refused(stack):
    a, b = await paid_order(stack, "kim"), await paid_order(stack, "lee")
    c = await paid_order(stack, "max", OTHER_STORE)
    assert (await cancel(stack, a.order_id, "m1", reason="打烊")).order.status == S.ORDER_STATUS_CANCELLED
    assert (await cancel(stack, a.order_id, "m1", reason="打烊")).order.status == S.ORDER_STATUS_CANCELLED
    assert await refused(cancel(stack, b.order_id, "m1", reason="打烊")) == REUSED
    assert (await get(stack, b)).status == S.ORDER_STATUS_PAID
    # The other store's m1 is its own; the buyer's m1 is the buyer's own.
    assert (await cancel(stack, c.order_id, "m1", reason="打烊")).order.status == S.ORDER_STATUS_CANCELLED
    assert (await cancel(stack, b.order_id, "m1", user="lee")).order.status == S.ORDER_STATUS_CANCELLED


async def test_twenty_concurrent_cancels_under_one_request_id_apply_one(stack):
    a, b = await unpaid_order(stack, "ned", 1), await unpaid_order(stack, "ned", 2)
    variants = [(a.order_id, "r1"), (b.order_id, "r1"), (a.order_id, "r2"), (b.order_id, "r2")]
    answers, reasons = await race(
        cancel(stack, variants[i % 4][0], "c1", user="ned", reason=variants[i % 4][1]) for i in range(20)
    )
    assert set(reasons) <= {REUSED}, reasons
    assert len(answers) == 5 and sum(reasons.values()) == 15
    (winner,) = {(o.order_id, o.cancel_reason) for o in answers}
    now = {o.order_id: (await get(stack, o)).status for o in (a, b)}
    assert now[winner[0]] == S.ORDER_STATUS_CANCELLED
    assert sorted(now.values()) == sorted([S.ORDER_STATUS_CANCELLED, S.ORDER_STATUS_PENDING_PAYMENT])


# --- ConfirmPayment ------------------------------------------------------------------------


async def test_a_payment_replayed_after_the_order_moved_on_still_succeeds(stack):
    a = await unpaid_order(stack, "ola", 1)
    assert (await pay(stack, a, "p1", "ola")).order.status == S.ORDER_STATUS_PAID
    await update(stack, a.order_id, ACCEPTED, "acc")
    replay = (await pay(stack, a, "p1", "ola")).order
    assert replay.status == ACCEPTED and replay.payment.status == S.PAYMENT_STATUS_CAPTURED


async def test_a_payment_request_id_reused_for_another_order_takes_no_money(stack):
    a, b = await unpaid_order(stack, "pam", 1), await unpaid_order(stack, "pam", 2)
    await pay(stack, a, "p1", "pam")
    assert await refused(pay(stack, b, "p1", "pam")) == REUSED
    assert await refused(pay(stack, a, "p1", "pam", reference="sbx_other")) == REUSED
    assert (await get(stack, b)).status == S.ORDER_STATUS_PENDING_PAYMENT
    assert b.payment.payment_reference not in stack.payments.captures  # its money was never taken
    # Another user's p1 is that user's own request.
    c = await unpaid_order(stack, "quin", 1)
    assert (await pay(stack, c, "p1", "quin")).order.status == S.ORDER_STATUS_PAID


async def test_twenty_concurrent_payments_under_one_request_id_capture_one(stack):
    a, b = await unpaid_order(stack, "rae", 1), await unpaid_order(stack, "rae", 2)
    answers, reasons = await race(pay(stack, (a, b)[i % 2], "p1", "rae") for i in range(20))
    assert set(reasons) <= {REUSED}, reasons
    assert len(answers) == 10 and sum(reasons.values()) == 10
    (winner,) = {o.order_id for o in answers}
    now = {o.order_id: (await get(stack, o)).status for o in (a, b)}
    assert now[winner] == S.ORDER_STATUS_PAID
    assert sorted(now.values()) == sorted([S.ORDER_STATUS_PAID, S.ORDER_STATUS_PENDING_PAYMENT])
    captured = {a.payment.payment_reference, b.payment.payment_reference} & set(stack.payments.captures)
    assert len(captured) == 1  # the refused calls took no money
