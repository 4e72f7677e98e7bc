"""The order service over real gRPC with the real card and catalog servers in-process."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as card_svc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat_svc
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.errors import DomainError, FailedPrecondition, error_details
from services.order.handlers import _budget

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN_ONE, CAMPAIGN_TWO = "it-one", "it-two"
STORE, OTHER_STORE = "it-store-1", "it-store-2"
LATTE, TEA, CAKE = "it-latte", "it-tea", "it-cake"

AVAILABLE, RESERVED, REDEEMED = card_pb2.CARD_STATE_AVAILABLE, card_pb2.CARD_STATE_RESERVED, card_pb2.CARD_STATE_REDEEMED
S = order_pb2


def line(item=LATTE, qty=1):
    return catalog_pb2.LineSelection(item_id=item, quantity=qty)


def place_req(rid, user, lines=None, card_use=S.CARD_USE_BEST, campaign=CAMPAIGN_ONE, store=STORE, card_id=""):
    return svc.PlaceOrderRequest(
        request_id=rid,
        user_id=user,
        store_id=store,
        lines=lines if lines is not None else [line()],
        card_use=card_use,
        card_id=card_id,
        campaign_id=campaign,
    )


async def rpc_error(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code().name, error_details(info.value)


async def test_a_card_covering_the_order_makes_it_paid_and_redeems_the_card(stack):
    (card_id,) = await stack.signup("alice")
    resp = await stack.order.PlaceOrder(place_req("a1", "alice"), metadata=stack.md, timeout=5)
    o = resp.order
    assert o.status == S.ORDER_STATUS_PAID and o.payable_fen == 0 and o.card_discount_fen == 1500
    assert o.card_id == card_id and o.payment.status == S.PAYMENT_STATUS_NOT_REQUIRED
    assert o.store_name and o.lines[0].item_name == "测试拿铁"
    assert (await stack.cards("alice")) == {card_id: REDEEMED}
    calls = stack.order_server.upstream_calls
    # Reserved and redeemed in one card call (ReserveCardRequest.redeem): two upstream calls.
    assert calls[0]["ReserveCard"] == 1 and calls[0]["ConfirmReservation"] == 0 and calls[1]["Quote"] == 1
    history = await stack.card.GetCardHistory(card_svc.GetCardHistoryRequest(card_id=card_id), metadata=stack.admin_md)
    assert [e.cause for e in history.entries][-2:] == ["RESERVE", "CONFIRM"]
    got = await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="alice"), metadata=stack.md)
    assert got.order == o


async def test_without_a_card_the_order_waits_for_payment_and_is_paid_through_the_sandbox(stack):
    await stack.signup("bob")
    o = (await stack.order.PlaceOrder(place_req("b1", "bob", card_use=S.CARD_USE_NONE), metadata=stack.md)).order
    assert o.status == S.ORDER_STATUS_PENDING_PAYMENT and o.payable_fen == 1500 and not o.card_id
    assert o.payment.provider == "sandbox" and o.payment.payment_reference
    code, info = await rpc_error(
        stack.order.ConfirmPayment(
            svc.ConfirmPaymentRequest(request_id="p0", order_id=o.order_id, user_id="bob", payment_reference="made-up"),
            metadata=stack.md,
        )
    )
    assert (code, info["reason"]) == ("FAILED_PRECONDITION", "PAYMENT_REFERENCE_INVALID")
    paid = (
        await stack.order.ConfirmPayment(
            svc.ConfirmPaymentRequest(
                request_id="p1", order_id=o.order_id, user_id="bob", payment_reference=o.payment.payment_reference
            ),
            metadata=stack.md,
        )
    ).order
    assert paid.status == S.ORDER_STATUS_PAID and paid.payment.status == S.PAYMENT_STATUS_CAPTURED
    assert all(s == AVAILABLE for s in (await stack.cards("bob")).values())


async def test_payable_above_the_card_is_paid_by_money_and_cancellation_returns_card_and_money(stack):
    (card_id,) = await stack.signup("carol")
    o = (await stack.order.PlaceOrder(place_req("c1", "carol", [line(CAKE)]), metadata=stack.md)).order
    assert (o.subtotal_fen, o.card_discount_fen, o.payable_fen) == (3000, 2500, 500)
    assert (await stack.cards("carol")) == {card_id: RESERVED}
    paid = (
        await stack.order.ConfirmPayment(
            svc.ConfirmPaymentRequest(
                request_id="p", order_id=o.order_id, user_id="carol", payment_reference=o.payment.payment_reference
            ),
            metadata=stack.md,
        )
    ).order
    assert paid.status == S.ORDER_STATUS_PAID
    assert (await stack.cards("carol")) == {card_id: REDEEMED}
    cancelled = (
        await stack.order.CancelOrder(
            svc.CancelOrderRequest(request_id="x", order_id=o.order_id, user_id="carol", reason="不要了"),
            metadata=stack.md,
        )
    ).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED and cancelled.card_returned
    assert cancelled.payment.status == S.PAYMENT_STATUS_REFUNDED and cancelled.payment.refunded_fen == 500
    assert (await stack.cards("carol")) == {card_id: AVAILABLE}
    assert [h.status for h in cancelled.history] == [
        S.ORDER_STATUS_PENDING_PAYMENT,
        S.ORDER_STATUS_PAID,
        S.ORDER_STATUS_CANCELLED,
    ]


async def test_100_concurrent_placements_with_one_request_id_make_one_order_and_use_one_card(stack):
    cards = await stack.signup("dave", CAMPAIGN_TWO)
    assert len(cards) == 2
    req = place_req("same", "dave", campaign=CAMPAIGN_TWO)
    results = await asyncio.gather(
        *(stack.order.PlaceOrder(req, metadata=stack.md, timeout=20) for _ in range(100)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert len({r.order.order_id for r in results}) == 1
    states = sorted((await stack.cards("dave", CAMPAIGN_TWO)).values())
    assert states == [AVAILABLE, REDEEMED]
    listed = await stack.order.ListOrders(svc.ListOrdersRequest(user_id="dave"), metadata=stack.md)
    assert len(listed.orders) == 1


@pytest.mark.parametrize("card_use", [S.CARD_USE_BEST, S.CARD_USE_REQUIRED])
async def test_50_concurrent_orders_of_one_user_with_one_card_use_it_exactly_once(stack, card_use):
    (card_id,) = await stack.signup("erin")
    results = await asyncio.gather(
        *(
            stack.order.PlaceOrder(place_req(f"e{i}", "erin", card_use=card_use), metadata=stack.md, timeout=20)
            for i in range(50)
        ),
        return_exceptions=True,
    )
    ok = [r.order for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    with_card = [o for o in ok if o.card_id]
    assert len(with_card) == 1 and with_card[0].card_id == card_id and with_card[0].status == S.ORDER_STATUS_PAID
    if card_use == S.CARD_USE_BEST:
        assert not failed
        assert all(o.payable_fen == 1500 and o.status == S.ORDER_STATUS_PENDING_PAYMENT for o in ok if not o.card_id)
    else:
        assert len(ok) == 1 and len(failed) == 49
        assert {(f.code().name, error_details(f)["reason"]) for f in failed} == {("FAILED_PRECONDITION", "NO_CARD_AVAILABLE")}
    assert (await stack.cards("erin")) == {card_id: REDEEMED}


async def _sweep_until_settled(stack, attempts=40):
    """Sweep until nothing is left to do; the channel to the card service may need a moment
    (reconnect backoff) after the proxy comes back."""
    for _ in range(attempts):
        report = await stack.service.sweep()
        if not report.failed:
            return report
        await asyncio.sleep(0.25)
    raise AssertionError(f"sweep never settled: {report}")


async def test_card_service_down_gives_unavailable_and_no_card_stays_reserved_once_it_is_back(stack):
    (card_id,) = await stack.signup("frank")
    stack.proxy.cut()
    code, info = await rpc_error(stack.order.PlaceOrder(place_req("f1", "frank"), metadata=stack.md, timeout=5))
    assert (code, info["reason"]) == ("UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    await stack.service.drain()
    stack.proxy.down = False
    stack.clock.advance(31)
    await _sweep_until_settled(stack)
    assert (await stack.cards("frank")) == {card_id: AVAILABLE}
    retried = (await stack.order.PlaceOrder(place_req("f1", "frank"), metadata=stack.md, timeout=5)).order
    assert retried.status == S.ORDER_STATUS_PAID and retried.card_id == card_id


async def test_a_slow_card_service_gives_deadline_exceeded_and_the_hidden_redemption_becomes_the_order(stack):
    (card_id,) = await stack.signup("gina")
    # Warm the order->card connection (a user without cards: ReserveCard answers NO_CARD_AVAILABLE),
    # so the delay below holds back answers, not the connection handshake.
    await stack.order.PlaceOrder(place_req("warm", "nobody"), metadata=stack.md)
    stack.proxy.delay = 0.6
    code, info = await rpc_error(stack.order.PlaceOrder(place_req("g1", "gina"), metadata=stack.md, timeout=0.4))
    # The order service answers UPSTREAM_DEADLINE just before the caller's deadline; on a loaded
    # machine the caller's own deadline may fire first, which carries no reason.
    assert code == "DEADLINE_EXCEEDED" and info["reason"] in ("UPSTREAM_DEADLINE", None)
    # The card service did reserve and redeem the card; the order service asks it once answers
    # come back, finds the card redeemed for this order and finishes the order instead of
    # leaving a redeemed card without one.
    await stack.service.drain()
    stack.proxy.delay = 0.0
    stack.clock.advance(31)
    await _sweep_until_settled(stack)
    assert (await stack.cards("gina")) == {card_id: REDEEMED}
    history = await stack.card.GetCardHistory(card_svc.GetCardHistoryRequest(card_id=card_id), metadata=stack.admin_md)
    assert [e.cause for e in history.entries][-2:] == ["RESERVE", "CONFIRM"]
    # The app's retry with the same request_id gets that order.
    retried = (await stack.order.PlaceOrder(place_req("g1", "gina"), metadata=stack.md, timeout=5)).order
    assert retried.status == S.ORDER_STATUS_PAID and retried.card_id == card_id and retried.payable_fen == 0


async def test_an_unpaid_order_lapses_and_a_payment_after_that_is_refunded(stack):
    (card_id,) = await stack.signup("hank")
    o = (await stack.order.PlaceOrder(place_req("h1", "hank", [line(CAKE)]), metadata=stack.md)).order
    stack.clock.advance(15 * 60 + 1)
    await _sweep_until_settled(stack)
    lapsed = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="hank"), metadata=stack.md)).order
    assert lapsed.status == S.ORDER_STATUS_CANCELLED and lapsed.history[-1].note == "PAYMENT_TTL_PASSED"
    assert (await stack.cards("hank")) == {card_id: AVAILABLE}
    late = (
        await stack.order.ConfirmPayment(
            svc.ConfirmPaymentRequest(
                request_id="late", order_id=o.order_id, user_id="hank", payment_reference=o.payment.payment_reference
            ),
            metadata=stack.md,
        )
    ).order
    assert late.status == S.ORDER_STATUS_CANCELLED
    assert late.payment.status == S.PAYMENT_STATUS_REFUNDED and late.payment.note == "LATE_PAYMENT_REFUNDED"
    assert (await stack.cards("hank")) == {card_id: AVAILABLE}


async def test_watch_order_sees_every_transition_in_order_and_a_late_watcher_gets_the_current_state(stack):
    await stack.signup("ivan")
    o = (await stack.order.PlaceOrder(place_req("i1", "ivan"), metadata=stack.md)).order
    call = stack.order.WatchOrder(svc.WatchOrderRequest(order_id=o.order_id, user_id="ivan"), metadata=stack.md, timeout=10)
    seen = []
    first = await call.read()
    seen.append(first.order.status)
    for status in (S.ORDER_STATUS_ACCEPTED, S.ORDER_STATUS_PREPARING, S.ORDER_STATUS_READY):
        await stack.order.UpdateOrderStatus(
            svc.UpdateOrderStatusRequest(request_id=f"u{status}", order_id=o.order_id, status=status),
            metadata=stack.merchant_md,
        )
    # A second watcher connecting late (a reconnect) starts from the current state.
    late = stack.order.WatchOrder(svc.WatchOrderRequest(order_id=o.order_id, user_id="ivan"), metadata=stack.md, timeout=10)
    assert (await late.read()).order.status == S.ORDER_STATUS_READY
    await stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(request_id="done", order_id=o.order_id, status=S.ORDER_STATUS_COMPLETED),
        metadata=stack.merchant_md,
    )
    while (msg := await call.read()) is not grpc.aio.EOF:
        seen.append(msg.order.status)
    assert seen == [
        S.ORDER_STATUS_PAID,
        S.ORDER_STATUS_ACCEPTED,
        S.ORDER_STATUS_PREPARING,
        S.ORDER_STATUS_READY,
        S.ORDER_STATUS_COMPLETED,
    ]
    rest = []
    while (msg := await late.read()) is not grpc.aio.EOF:
        rest.append(msg.order.status)
    assert rest == [S.ORDER_STATUS_COMPLETED]


async def test_bad_input_gets_a_clear_status_and_never_internal(stack):
    await stack.signup("judy")
    (other_card,) = await stack.signup("mallory")
    cases = [
        (place_req("n1", "judy", lines=[]), "INVALID_ARGUMENT", "NO_LINES"),
        (place_req("n2", "judy", lines=[line(qty=0)]), "INVALID_ARGUMENT", "QUANTITY_OUT_OF_RANGE"),
        (place_req("n3", "judy", lines=[line(qty=1000)]), "INVALID_ARGUMENT", "QUANTITY_OUT_OF_RANGE"),
        (place_req("n4", "judy", store="no-such-store"), "NOT_FOUND", "STORE_NOT_FOUND"),
        (place_req("n5", "judy", lines=[line("no-such-item")]), "INVALID_ARGUMENT", "UNKNOWN_ITEM"),
        (
            place_req("n6", "judy", card_use=S.CARD_USE_SPECIFIC, card_id=other_card),
            "PERMISSION_DENIED",
            "CARD_NOT_OWNED",
        ),
        (place_req("x" * 10_000, "judy"), "INVALID_ARGUMENT", "FIELD_TOO_LONG"),
    ]
    for req, code, reason in cases:
        got_code, info = await rpc_error(stack.order.PlaceOrder(req, metadata=stack.md, timeout=5))
        assert (got_code, info["reason"]) == (code, reason), (req.request_id[:10], info)
    _, info = await rpc_error(stack.order.PlaceOrder(place_req("n5", "judy", lines=[line(), line("nope")]), metadata=stack.md))
    assert info["violations"][0][0] == "lines[1]"
    assert (await stack.cards("mallory")) == {other_card: AVAILABLE}


async def test_sold_out_items_are_failed_precondition_naming_the_line(stack):
    await stack.catalog.SetItemAvailability(
        cat_svc.SetItemAvailabilityRequest(request_id="so", store_id=STORE, item_id=TEA, available=False),
        metadata=stack.merchant_md,
    )
    code, info = await rpc_error(stack.order.PlaceOrder(place_req("s1", "kate", [line(), line(TEA)]), metadata=stack.md))
    assert (code, info["reason"]) == ("FAILED_PRECONDITION", "ITEM_SOLD_OUT")
    assert info["violations"][0][0] == "lines[1]"


async def test_users_see_only_their_own_orders_and_roles_are_enforced(stack):
    await stack.signup("leo")
    o = (await stack.order.PlaceOrder(place_req("l1", "leo"), metadata=stack.md)).order
    code, info = await rpc_error(stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="eve"), metadata=stack.md))
    assert (code, info["reason"]) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    code, _ = await rpc_error(
        stack.order.UpdateOrderStatus(
            svc.UpdateOrderStatusRequest(request_id="u", order_id=o.order_id, status=S.ORDER_STATUS_ACCEPTED),
            metadata=stack.md,
        )
    )
    assert code == "PERMISSION_DENIED"
    code, info = await rpc_error(
        stack.order.CancelOrder(svc.CancelOrderRequest(request_id="c", order_id=o.order_id), metadata=stack.md)
    )
    assert (code, info["reason"]) == ("PERMISSION_DENIED", "MERCHANT_REQUIRED")
    code, _ = await rpc_error(stack.order.ListAllOrders(svc.ListAllOrdersRequest(), metadata=stack.md))
    assert code == "PERMISSION_DENIED"
    everything = await stack.order.ListAllOrders(svc.ListAllOrdersRequest(), metadata=stack.admin_md)
    assert [x.order_id for x in everything.orders] == [o.order_id]
    code, _ = await rpc_error(stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="leo")))
    assert code == "UNAUTHENTICATED"
    watch = stack.order.WatchOrder(svc.WatchOrderRequest(order_id=o.order_id, user_id="eve"), metadata=stack.md, timeout=5)
    code, info = await rpc_error(watch.read())
    assert (code, info["reason"]) == ("NOT_FOUND", "ORDER_NOT_FOUND")


async def test_a_cart_is_priced_on_read_refuses_another_store_and_can_be_ordered(stack):
    await stack.signup("mia")
    add = lambda rid, store, item, qty=1: stack.order.AddCartItem(  # noqa: E731
        svc.AddCartItemRequest(request_id=rid, user_id="mia", store_id=store, line=line(item, qty)), metadata=stack.md
    )
    await add("a1", STORE, LATTE)
    cart = (await add("a2", STORE, TEA, 2)).cart
    assert cart.total_fen == 3100 and cart.orderable and len(cart.lines) == 2 and cart.lines[1].priced.line_total_fen == 1600
    code, info = await rpc_error(add("a3", OTHER_STORE, LATTE))
    assert (code, info["reason"]) == ("FAILED_PRECONDITION", "CART_STORE_MISMATCH")
    o = (
        await stack.order.PlaceOrder(
            svc.PlaceOrderRequest(request_id="m1", user_id="mia", from_cart=True, campaign_id=CAMPAIGN_ONE),
            metadata=stack.md,
        )
    ).order
    assert o.subtotal_fen == 3100 and o.payable_fen == 600 and o.store_id == STORE
    assert not (await stack.order.GetCart(svc.GetCartRequest(user_id="mia"), metadata=stack.md)).cart.lines


async def _pay_while_the_card_service_is_down_past_the_hold(stack, user):
    """A to-pay order, paid in its window while the card service is unreachable until the
    card's hold has lapsed (payment window + 60 s): the card confirmation arrives too late."""
    (card_id,) = await stack.signup(user)
    o = (await stack.order.PlaceOrder(place_req(f"{user}-1", user, [line(CAKE)]), metadata=stack.md)).order
    assert o.status == S.ORDER_STATUS_PENDING_PAYMENT and o.card_id == card_id
    stack.proxy.cut()
    paid = (await stack.order.ConfirmPayment(
        svc.ConfirmPaymentRequest(request_id=f"{user}-pay", order_id=o.order_id, user_id=user, payment_reference=o.payment.payment_reference),
        metadata=stack.md,
    )).order
    assert paid.status == S.ORDER_STATUS_PAID  # the card step waits for the sweep
    await stack.service.drain()
    stack.clock.advance(15 * 60 + 60 + 1)
    return card_id, o


async def test_a_payment_made_in_time_stands_when_the_card_confirmation_comes_after_the_hold_lapsed(stack):
    card_id, o = await _pay_while_the_card_service_is_down_past_the_hold(stack, "olga")
    stack.proxy.down = False
    await _sweep_until_settled(stack)
    got = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="olga"), metadata=stack.md)).order
    # The card went back to its owner unspent when the hold lapsed: it is taken again, and the
    # order the buyer saw PAID stays PAID (it was cancelled and refunded, CARD_HOLD_LAPSED).
    assert got.status == S.ORDER_STATUS_PAID and got.payment.status == S.PAYMENT_STATUS_CAPTURED
    assert got.card_id == card_id and got.card_discount_fen == o.card_discount_fen
    assert (await stack.cards("olga")) == {card_id: REDEEMED}


async def test_when_the_lapsed_card_was_spent_meanwhile_the_paid_order_is_cancelled_and_refunded(stack):
    card_id, o = await _pay_while_the_card_service_is_down_past_the_hold(stack, "pia")
    stack.proxy.down = False
    # The card, back with its owner, pays for another order first.
    for _ in range(40):
        try:
            other = (await stack.order.PlaceOrder(place_req("pia-2", "pia"), metadata=stack.md, timeout=5)).order
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.25)  # the channel to the card service reconnecting
    assert other.card_id == card_id
    await _sweep_until_settled(stack)
    got = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="pia"), metadata=stack.md)).order
    assert got.status == S.ORDER_STATUS_CANCELLED and got.cancel_reason == "CARD_HOLD_LAPSED"
    assert got.payment.status == S.PAYMENT_STATUS_REFUNDED


async def test_a_cancel_while_the_sweep_confirms_a_lapsed_card_leaves_the_card_with_its_owner(stack):
    # The user cancels while the sweep's confirmation of the lapsed hold is on its way: the card
    # must not be taken again for an order that is now cancelled and refunded.
    card_id, o = await _pay_while_the_card_service_is_down_past_the_hold(stack, "quinn")
    stack.proxy.down = False
    service = stack.service
    real_confirm = service.card.confirm
    cancelled = []

    async def confirm(key, *, timeout):
        try:
            return await real_confirm(key, timeout=timeout)
        except FailedPrecondition:
            if not cancelled:
                cancelled.append(await service.cancel_order(o.order_id, "quinn", "不要了"))
            raise

    service.card.confirm = confirm
    await _sweep_until_settled(stack)
    got = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id="quinn"), metadata=stack.md)).order
    assert cancelled and got.status == S.ORDER_STATUS_CANCELLED and got.payment.status == S.PAYMENT_STATUS_REFUNDED
    assert (await stack.cards("quinn")) == {card_id: AVAILABLE}


async def test_a_sweep_driving_a_row_read_before_a_cancel_does_not_take_the_card_again(stack):
    card_id, o = await _pay_while_the_card_service_is_down_past_the_hold(stack, "rita")
    stack.proxy.down = False
    service = stack.service
    stale = await service.store.get(o.order_id)  # as a sweep's list holds it
    for _ in range(40):  # the channel to the card service may need a moment to reconnect
        try:
            await service.cancel_order(o.order_id, "rita", "不要了")
            break
        except DomainError:
            await asyncio.sleep(0.25)
    await _sweep_until_settled(stack)
    await service._drive(stale, _budget(5))
    got = await service.store.get(o.order_id)
    assert got.status == "CANCELLED" and got.card_returned
    assert (await stack.cards("rita")) == {card_id: AVAILABLE}
