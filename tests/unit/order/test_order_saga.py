"""The placement saga, payment, lifecycle and recovery over fake card and catalog services."""
from __future__ import annotations

import asyncio
import base64

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection
from services.order.payment import PaymentDeclined, SandboxPaymentProvider
from services.order.upstream import CONFIRMED


def place(request_id="r1", user="u1", store="s1", lines=(("latte", 1),), card_use=model.CARD_BEST, card_id="", from_cart=False):
    return PlaceOrderInput(
        request_id=request_id,
        user_id=user,
        store_id=store,
        lines=tuple(Selection(i, q) for i, q in lines),
        card_use=card_use,
        card_id=card_id,
        from_cart=from_cart,
    )


async def fails(coro, code, reason=None):
    with pytest.raises(DomainError) as info:
        await coro
    assert info.value.code == code, info.value
    if reason is not None:
        assert info.value.reason == reason, info.value
    return info.value


async def test_a_card_covering_everything_pays_the_order_at_once(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(lines=(("latte", 1),)))
    assert order.status == model.PAID and order.payable_fen == 0 and order.card_discount_fen == 1500
    assert order.card_id == "c1" and order.payment.status == model.PAY_NOT_REQUIRED
    assert world.card.cards["c1"].state == "REDEEMED"
    assert [h.status for h in order.history] == [model.PAID]
    # Reserved and redeemed in one card call: Quote + ReserveCard(redeem) is the whole cost.
    assert dict(world.card.calls) == {"ReserveCard": 1, "ReserveCard.redeem": 1}


async def test_an_order_above_the_face_value_waits_for_payment_then_confirms_the_card(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(lines=(("cake", 1),)))
    assert order.status == model.PENDING_PAYMENT
    assert (order.subtotal_fen, order.card_discount_fen, order.payable_fen) == (3000, 2500, 500)
    assert order.payment.provider == "sandbox" and order.payment.status == model.PAY_PENDING
    assert world.card.cards["c1"].state == "RESERVED"
    paid = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert paid.status == model.PAID and paid.payment.status == model.PAY_CAPTURED and not paid.card_action
    assert world.card.cards["c1"].state == "REDEEMED"
    again = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert again.version == paid.version


async def test_a_confirmation_shed_by_an_overloaded_card_service_is_retried_not_thrown_away(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True  # a card server that still needs the separate confirm
    world.card.shed_confirms = 2
    order = await world.service.place_order(place())
    assert order.status == model.PAID and world.card.calls["ConfirmReservation"] == 3
    assert world.card.cards["c1"].state == "REDEEMED"


async def test_a_card_server_that_ignores_redeem_gets_the_separate_confirmation(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True
    order = await world.service.place_order(place())
    assert order.status == model.PAID and order.payable_fen == 0
    assert world.card.cards["c1"].state == "REDEEMED"
    assert world.card.calls["ReserveCard"] == 1 and world.card.calls["ConfirmReservation"] == 1


async def test_an_order_above_the_face_value_learns_it_and_then_asks_for_a_plain_hold_at_once(world):
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u2")
    first = await world.service.place_order(place(lines=(("cake", 1),)))
    assert first.status == model.PENDING_PAYMENT and first.payable_fen == 500
    # Refused REDEEM_NOT_COVERED (nothing held), then held for payment.
    assert world.card.calls["ReserveCard"] == 2 and world.card.calls["ReserveCard.redeem"] == 1
    second = await world.service.place_order(place(request_id="r2", user="u2", lines=(("cake", 1),)))
    assert second.status == model.PENDING_PAYMENT and world.card.cards["c2"].state == "RESERVED"
    assert world.card.calls["ReserveCard"] == 3 and world.card.calls["ReserveCard.redeem"] == 1


async def test_a_card_redeemed_though_it_covers_only_part_is_given_back_and_the_retry_holds_it(world):
    world.card.grant("c1", "u1")
    world.card.redeems_partly = True
    # A cake (30 yuan) is above the 25-yuan card; the first order of the campaign does not know
    # the face value yet and asks to redeem.
    await fails(world.service.place_order(place(lines=(("cake", 1),))), "UNAVAILABLE", "CARD_REDEEMED_PARTLY")
    await world.service.drain()
    assert world.card.cards["c1"].state == "AVAILABLE"
    retried = await world.service.place_order(place(lines=(("cake", 1),)))
    assert retried.status == model.PENDING_PAYMENT and retried.payable_fen == 500
    assert world.card.cards["c1"].state == "RESERVED"


async def test_a_crash_between_the_card_redeem_and_the_order_write_is_undone_and_the_retry_places_it(world):
    from services.order.handlers import OrderService

    world.card.grant("c1", "u1")
    redeem_then_die_inner = world.card.reserve

    async def redeem_then_die(**kw):
        await redeem_then_die_inner(**kw)
        # The process dies right after the card service committed the redemption.
        raise asyncio.CancelledError()

    world.card.reserve = redeem_then_die
    await fails(world.service.place_order(place()), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    oid = model.order_id_for("u1", "r1")
    # A new request writes its row only after the card call: nothing was written.
    assert await world.store.get(oid) is None
    assert world.card.cards["c1"].state == "REDEEMED"
    # A new process over the same store: its startup pass lists the card service's
    # reservations since the watermark and gives back the card no order row knows about.
    world.card.reserve = redeem_then_die_inner
    world.clock.advance(5)
    restarted = OrderService(world.store, world.card, world.catalog, world.payments, clock=world.clock, config=world.service.config)
    report = await restarted.sweep(startup=True)
    assert report.recovered == 1 and report.failed == 0
    assert world.card.cards["c1"].state == "AVAILABLE" and world.card.calls["RefundCard"] == 1
    # The client's retry places the order under the next attempt's key, with the same card.
    order = await restarted.place_order(place())
    assert order.order_id == oid and order.status == model.PAID and order.card_id == "c1" and order.attempt == 1
    assert world.card.reservations[f"{oid}.1"].state == CONFIRMED and world.card.cards["c1"].state == "REDEEMED"
    # Later passes leave it alone; another retry gets the same order without a card call.
    assert (await restarted.sweep(startup=True)).recovered == 0
    reserves = world.card.calls["ReserveCard"]
    again = await restarted.place_order(place())
    assert again == order and world.card.calls["ReserveCard"] == reserves


async def test_a_retry_after_a_crash_between_redeem_and_paid_write_finishes_the_order(world):
    from services.order.handlers import OrderService

    world.card.grant("c1", "u1")
    inner = world.card.reserve

    async def redeem_then_die(**kw):
        await inner(**kw)
        raise asyncio.CancelledError()

    world.card.reserve = redeem_then_die
    await fails(world.service.place_order(place()), "UNAVAILABLE")
    world.card.reserve = inner
    restarted = OrderService(world.store, world.card, world.catalog, world.payments, clock=world.clock, config=world.service.config)
    order = await restarted.place_order(place())
    assert order.status == model.PAID and order.card_id == "c1"
    assert world.card.cards["c1"].state == "REDEEMED" and world.card.calls["ReleaseReservation"] == 0


async def test_card_use_none_never_calls_the_card_service(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(card_use=model.CARD_NONE))
    assert order.status == model.PENDING_PAYMENT and order.payable_fen == 1500 and order.card_id == ""
    assert world.card.calls["ReserveCard"] == 0


async def test_concurrent_retries_of_one_request_make_one_order_and_use_one_card(world):
    world.card.grant("c1", "u1")
    world.card.grant("c2", "u1")
    orders = await asyncio.gather(*(world.service.place_order(place()) for _ in range(30)))
    assert len({o.order_id for o in orders}) == 1
    assert world.card.calls["ReserveCard"] == 1 and world.catalog.calls["Quote"] == 1
    assert sorted(c.state for c in world.card.cards.values()) == ["AVAILABLE", "REDEEMED"]
    later = await world.service.place_order(place())
    assert later.order_id == orders[0].order_id and world.card.calls["ReserveCard"] == 1


async def test_the_same_request_id_with_other_content_is_refused(world):
    await world.service.place_order(place(lines=(("latte", 1),)))
    await fails(world.service.place_order(place(lines=(("latte", 2),))), "ALREADY_EXISTS", "REQUEST_ID_REUSED")


async def test_best_pays_full_price_without_a_card_and_required_fails_cleanly(world):
    best = await world.service.place_order(place("a", card_use=model.CARD_BEST))
    assert best.status == model.PENDING_PAYMENT and best.payable_fen == 1500
    await fails(world.service.place_order(place("b", card_use=model.CARD_REQUIRED)), "FAILED_PRECONDITION", "NO_CARD_AVAILABLE")
    # A retry of the failed request once the user has a card is a new attempt that succeeds.
    world.card.grant("c1", "u1")
    retried = await world.service.place_order(place("b", card_use=model.CARD_REQUIRED))
    assert retried.status == model.PAID and retried.card_id == "c1"


async def test_someone_elses_card_is_permission_denied_and_nothing_is_held(world):
    world.card.grant("c9", "other")
    await fails(
        world.service.place_order(place(card_use=model.CARD_SPECIFIC, card_id="c9")), "PERMISSION_DENIED", "CARD_NOT_OWNED"
    )
    assert world.card.cards["c9"].state == "AVAILABLE"


async def test_card_service_down_is_unavailable_and_the_sweep_compensates_once_it_is_back(world):
    world.card.grant("c1", "u1")
    world.card.down = True
    await fails(world.service.place_order(place()), "UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    await world.service.drain()  # the compensation right after the answer meets the card down too
    world.card.down = False
    world.clock.advance(31)
    report = await world.service.sweep()
    assert report.recovered == 1
    assert world.card.cards["c1"].state == "AVAILABLE"
    # The retry after the compensation is a fresh attempt.
    order = await world.service.place_order(place())
    assert order.status == model.PAID


async def test_a_slow_card_service_is_deadline_exceeded_and_the_hidden_hold_is_released(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True
    world.card.slow = True
    await fails(world.service.place_order(place()), "DEADLINE_EXCEEDED", "UPSTREAM_DEADLINE")
    world.card.slow = False
    await world.service.drain()
    # The card was held behind our back; the compensation right after the answer gave it back.
    assert world.card.cards["c1"].state == "AVAILABLE"


async def test_a_card_redeemed_behind_a_deadline_is_finished_into_the_order_the_retry_gets(world):
    world.card.grant("c1", "u1")
    world.card.slow = True
    await fails(world.service.place_order(place()), "DEADLINE_EXCEEDED", "UPSTREAM_DEADLINE")
    world.card.slow = False
    await world.service.drain()
    # Redeemed behind our back: the compensation found it CONFIRMED, so the order stands.
    oid = model.order_id_for("u1", "r1")
    assert (await world.store.get(oid)).status == model.PAID and world.card.cards["c1"].state == "REDEEMED"
    again = await world.service.place_order(place())
    assert again.order_id == oid and again.status == model.PAID


async def test_a_retry_resumes_a_placement_left_in_between(world):
    world.card.grant("c1", "u1")
    world.card.down = True
    await fails(world.service.place_order(place()), "UNAVAILABLE")
    await world.service.drain()  # its compensation failed as well: the PLACING row is left
    world.card.down = False
    order = await world.service.place_order(place())
    assert order.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"


async def test_recovery_finishes_an_order_whose_card_was_redeemed_before_a_crash(world):
    world.card.grant("c1", "u1")
    oid = model.order_id_for("u1", "r1")
    draft = model.Order(
        order_id=oid, request_id="r1", request_hash="h", user_id="u1", store_id="s1", store_name="S", brand_id="b",
        campaign_id="spring-2026", lines=(), subtotal_fen=1500, card_use=model.CARD_BEST, requested_card_id="",
        status=model.PLACING, create_ms=0, update_ms=0,
    )
    await world.store.begin_placement(draft)
    await world.card.reserve(campaign_id="x", user_id="u1", key=oid, amount_fen=1500, card_id="", ttl_seconds=0, timeout=1)
    await world.card.confirm(oid, timeout=1)
    report = await world.service.sweep(startup=True)
    assert report.recovered == 1
    order = await world.service.get_order(oid, "u1")
    assert order.status == model.PAID and order.card_id == "c1" and order.history[-1].note == "RECOVERED"


async def test_recovery_releases_a_card_held_for_an_order_that_never_finished(world):
    world.card.grant("c1", "u1")
    oid = model.order_id_for("u1", "r1")
    draft = model.Order(
        order_id=oid, request_id="r1", request_hash="h", user_id="u1", store_id="s1", store_name="S", brand_id="b",
        campaign_id="spring-2026", lines=(), subtotal_fen=1500, card_use=model.CARD_BEST, requested_card_id="",
        status=model.PLACING, create_ms=0, update_ms=world.service._now(),
    )
    await world.store.begin_placement(draft)
    await world.card.reserve(campaign_id="x", user_id="u1", key=oid, amount_fen=1500, card_id="", ttl_seconds=0, timeout=1)
    assert (await world.service.sweep()).recovered == 0  # still within its grace period
    assert (await world.service.sweep(startup=True)).recovered == 1
    assert world.card.cards["c1"].state == "AVAILABLE"
    assert (await world.store.get(oid)).status == model.ABORTED


async def test_an_unpaid_order_lapses_and_a_late_payment_is_refunded_without_the_card(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(lines=(("cake", 1),)))
    world.clock.advance(901)
    report = await world.service.sweep()
    assert report.expired == 1
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.status == model.CANCELLED and lapsed.card_returned
    assert lapsed.payment.status == model.PAY_VOIDED and lapsed.history[-1].note == model.NOTE_PAYMENT_TTL
    assert world.card.cards["c1"].state == "AVAILABLE"
    late = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert late.status == model.CANCELLED
    assert late.payment.status == model.PAY_REFUNDED and late.payment.note == model.NOTE_LATE_PAYMENT
    assert late.payment.refunded_fen == 500 and world.payments.refunds[order.payment.payment_id] == 500
    assert world.card.cards["c1"].state == "AVAILABLE"


async def test_a_payment_arriving_after_the_ttl_but_before_the_sweep_is_refunded_too(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(lines=(("cake", 1),)))
    world.clock.advance(16 * 60)
    late = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert late.status == model.CANCELLED and late.payment.status == model.PAY_REFUNDED
    assert world.card.cards["c1"].state == "AVAILABLE"


async def test_declined_and_timed_out_payments_leave_the_order_payable(world):
    order = await world.service.place_order(place(card_use=model.CARD_NONE))
    await fails(world.service.confirm_payment(order.order_id, "u1", "forged"), "FAILED_PRECONDITION", "PAYMENT_REFERENCE_INVALID")
    world.payments.mode = "decline"
    await fails(world.service.confirm_payment(order.order_id, "u1", order.payment.reference), "FAILED_PRECONDITION", "PAYMENT_DECLINED")
    world.payments.mode = "timeout"
    await fails(world.service.confirm_payment(order.order_id, "u1", order.payment.reference), "DEADLINE_EXCEEDED", "PAYMENT_PROVIDER_TIMEOUT")
    world.payments.mode = "approve"
    paid = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert paid.status == model.PAID


def _forge_amount(reference: str, amount_text: str) -> str:
    """A sandbox reference ("<payment id>.<amount>.<signature>") with its amount part rewritten."""
    payment_id, _, signature = reference.split(".")
    return f"{payment_id}.{amount_text}.{signature}"


@pytest.mark.parametrize("amount_fen, amount_text", [
    (2, "²"),  # str.isdigit() accepts it, int() raises ValueError: was an INTERNAL
    (1, "①"),
    (1500, "１５００"),  # full-width digits: int() reads 1500, so the genuine signature matched
    (1500, "١٥٠٠"),  # Arabic-Indic digits: likewise
    (1500, "0" * 20 + "1500"),  # more digits than any amount has
    (1500, "01500"),  # not the text the sandbox issued, though it reads as the same amount
])
async def test_the_sandbox_refuses_a_reference_whose_amount_is_not_ascii_digits(amount_fen, amount_text):
    payments = SandboxPaymentProvider("secret")
    genuine = await payments.create_intent("o1", amount_fen)
    with pytest.raises(PaymentDeclined) as err:
        await payments.capture(_forge_amount(genuine.reference, amount_text), "o1", amount_fen)
    assert err.value.reason == "PAYMENT_REFERENCE_INVALID"
    assert payments.captures == {}
    captured = await payments.capture(genuine.reference, "o1", amount_fen)
    assert captured.amount_fen == amount_fen and captured.payment_id == genuine.payment_id


async def test_the_lifecycle_allows_only_the_next_step_and_records_every_transition(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place())
    await fails(world.service.update_status(order.order_id, model.READY, ""), "FAILED_PRECONDITION", "ILLEGAL_TRANSITION")
    for step in (model.ACCEPTED, model.PREPARING):
        order = await world.service.update_status(order.order_id, step, "ok")
    await fails(world.service.cancel_order(order.order_id, "u1", ""), "FAILED_PRECONDITION", "ORDER_NOT_CANCELLABLE")
    for step in (model.READY, model.COMPLETED):
        order = await world.service.update_status(order.order_id, step, "")
    assert [h.status for h in order.history] == [model.PAID, model.ACCEPTED, model.PREPARING, model.READY, model.COMPLETED]
    assert [h.actor for h in order.history] == ["user", "merchant", "merchant", "merchant", "merchant"]
    await fails(world.service.cancel_order(order.order_id, "", "late"), "FAILED_PRECONDITION", "ORDER_NOT_CANCELLABLE")


async def test_cancelling_a_paid_order_returns_the_card_and_the_money(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place(lines=(("cake", 1),)))
    await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    cancelled = await world.service.cancel_order(order.order_id, "u1", "changed my mind")
    assert cancelled.status == model.CANCELLED and cancelled.card_returned
    assert cancelled.payment.status == model.PAY_REFUNDED and cancelled.payment.refunded_fen == 500
    assert world.card.cards["c1"].state == "AVAILABLE"
    again = await world.service.cancel_order(order.order_id, "u1", "again")
    assert again.version == cancelled.version


async def test_the_merchant_may_cancel_while_preparing(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place())
    await world.service.update_status(order.order_id, model.ACCEPTED, "")
    await world.service.update_status(order.order_id, model.PREPARING, "")
    cancelled = await world.service.cancel_order(order.order_id, "", "out of milk")
    assert cancelled.status == model.CANCELLED and cancelled.history[-1].actor == "merchant"
    assert world.card.cards["c1"].state == "AVAILABLE"


async def test_a_cancellation_while_the_card_service_is_down_is_finished_by_the_sweep(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place())
    world.card.down = True
    cancelled = await world.service.cancel_order(order.order_id, "u1", "")
    assert cancelled.status == model.CANCELLED and cancelled.card_action == model.CARD_RETURN
    world.card.down = False
    assert (await world.service.sweep()).driven == 1
    assert world.card.cards["c1"].state == "AVAILABLE"
    assert (await world.service.get_order(order.order_id, "u1")).card_returned


async def test_another_users_order_is_not_found(world):
    order = await world.service.place_order(place(card_use=model.CARD_NONE))
    await fails(world.service.get_order(order.order_id, "u2"), "NOT_FOUND", "ORDER_NOT_FOUND")
    await fails(world.service.cancel_order(order.order_id, "u2", ""), "NOT_FOUND", "ORDER_NOT_FOUND")
    await fails(world.service.confirm_payment(order.order_id, "u2", order.payment.reference), "NOT_FOUND")
    orders, _ = await world.service.list_orders("u2", 0, "")
    assert orders == []


@pytest.mark.parametrize(
    "request_kwargs, code, reason",
    [
        (dict(lines=()), "INVALID_ARGUMENT", "NO_LINES"),
        (dict(lines=(("latte", 0),)), "INVALID_ARGUMENT", "QUANTITY_OUT_OF_RANGE"),
        (dict(lines=(("latte", 1000),)), "INVALID_ARGUMENT", "QUANTITY_OUT_OF_RANGE"),
        (dict(request_id="x" * 10_000), "INVALID_ARGUMENT", "FIELD_TOO_LONG"),
        (dict(request_id=""), "INVALID_ARGUMENT", "FIELD_REQUIRED"),
        (dict(lines=(("nope", 1),)), "INVALID_ARGUMENT", "UNKNOWN_ITEM"),
        (dict(store="s404"), "NOT_FOUND", "STORE_NOT_FOUND"),
        (dict(card_use=model.CARD_SPECIFIC), "INVALID_ARGUMENT", "FIELD_REQUIRED"),
    ],
)
async def test_bad_input_gets_a_clear_status(world, request_kwargs, code, reason):
    await fails(world.service.place_order(place(**request_kwargs)), code, reason)


async def test_quote_problems_name_the_line(world):
    world.catalog.sold_out.add("tea")
    err = await fails(
        world.service.place_order(place(lines=(("latte", 1), ("tea", 1)))), "FAILED_PRECONDITION", "ITEM_SOLD_OUT"
    )
    assert err.violations[0][0] == "lines[1]"
    world.catalog.closed.add("s1")
    await fails(world.service.place_order(place("r2")), "FAILED_PRECONDITION", "STORE_CLOSED")


async def test_list_orders_is_newest_first_and_paginated(world):
    ids = []
    for i in range(5):
        world.clock.advance(1)
        ids.append((await world.service.place_order(place(f"r{i}", card_use=model.CARD_NONE))).order_id)
    page1, token = await world.service.list_orders("u1", 2, "")
    page2, token2 = await world.service.list_orders("u1", 2, token)
    page3, token3 = await world.service.list_orders("u1", 2, token2)
    assert [o.order_id for o in page1 + page2 + page3] == ids[::-1] and token3 == ""
    await fails(world.service.list_orders("u1", 2, "garbage"), "INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")


@pytest.mark.parametrize("raw", [
    "²|o1",  # str.isdigit() accepts it, int() raises ValueError: was an INTERNAL
    "99999999999999999999999|o1",  # beyond 64 bits: SQLite could not bind it (OverflowError)
    "9223372036854775808|o1",
    "١٢|o1",  # Arabic-Indic digits: int() reads 12
    "１２|o1",  # full-width digits: likewise
    "-1|o1",
    "|o1",
])
async def test_list_orders_refuses_a_token_whose_time_is_not_ascii_digits_within_int64(world, raw):
    token = base64.urlsafe_b64encode(raw.encode()).decode()
    await fails(world.service.list_orders("u1", 2, token), "INVALID_ARGUMENT", "INVALID_PAGE_TOKEN")


async def test_watch_sends_the_current_state_then_every_change_and_ends_when_final(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(place())
    seen: list[str] = []

    async def watch():
        async for o in world.service.watch(order.order_id, "u1"):
            seen.append(o.status)

    watcher = asyncio.create_task(watch())
    while world.service.events.watchers(order.order_id) == 0 or not seen:
        await asyncio.sleep(0.001)
    for step in (model.ACCEPTED, model.PREPARING, model.READY, model.COMPLETED):
        await world.service.update_status(order.order_id, step, "")
        await asyncio.sleep(0.001)
    await asyncio.wait_for(watcher, 2)
    assert seen == [model.PAID, model.ACCEPTED, model.PREPARING, model.READY, model.COMPLETED]
    assert world.service.events.watchers(order.order_id) == 0


async def test_cart_is_one_store_priced_on_read_and_ordered_from(world):
    world.card.grant("c1", "u1")
    cart = await world.service.add_cart_item("u1", "s1", Selection("latte", 1), "a1")
    cart = await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")
    cart = await world.service.add_cart_item("u1", "s1", Selection("tea", 2), "a2")  # retried
    assert len(cart.selections) == 2 and cart.quote.total_fen == 3100 and cart.orderable
    await fails(world.service.add_cart_item("u1", "s2", Selection("latte", 1), "a3"), "FAILED_PRECONDITION", "CART_STORE_MISMATCH")
    await fails(world.service.add_cart_item("u1", "s1", Selection("nope", 1), "a4"), "INVALID_ARGUMENT", "UNKNOWN_ITEM")
    world.catalog.sold_out.add("tea")
    cart = await world.service.get_cart("u1")
    assert not cart.orderable and cart.quote.problems[0].reason == "ITEM_SOLD_OUT"
    world.catalog.sold_out.clear()
    order = await world.service.place_order(place("c", store="", lines=(), from_cart=True))
    assert order.subtotal_fen == 3100 and order.payable_fen == 600
    assert (await world.service.get_cart("u1")).selections == ()
    again = await world.service.place_order(place("c", store="", lines=(), from_cart=True))
    assert again.order_id == order.order_id
    await fails(world.service.place_order(place("d", store="", lines=(), from_cart=True)), "FAILED_PRECONDITION", "CART_EMPTY")
