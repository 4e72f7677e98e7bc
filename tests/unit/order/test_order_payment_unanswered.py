"""A capture the payment provider left unanswered (PaymentTimeout) may have taken the money.
If the buyer never retries, the order lapses or is cancelled: the money must then be refunded
when it was taken, and nothing refunded when it was not."""
from __future__ import annotations

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Selection
from services.order.payment import PaymentTimeout


def to_pay(request_id: str = "r1", user: str = "u1") -> PlaceOrderInput:
    return PlaceOrderInput(
        request_id=request_id, user_id=user, store_id="s1", lines=(Selection("cake", 1),), card_use=model.CARD_NONE
    )


def provider_answers_late(world, *, takes_the_money: bool) -> None:
    """The provider times out; with takes_the_money, after the capture landed on its side."""
    inner = world.payments.capture

    async def capture(reference, order_id, amount_fen):
        if takes_the_money:
            await inner(reference, order_id, amount_fen)
        raise PaymentTimeout(reference)

    world.payments.capture = capture
    world.payments.answers_again = lambda: setattr(world.payments, "capture", inner)


async def unanswered_payment(world, order) -> None:
    with pytest.raises(DomainError) as info:
        await world.service.confirm_payment(order.order_id, order.user_id, order.payment.reference)
    assert (info.value.code, info.value.reason) == ("DEADLINE_EXCEEDED", "PAYMENT_PROVIDER_TIMEOUT")


async def test_money_taken_behind_a_timed_out_capture_is_refunded_when_the_order_lapses(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=True)
    await unanswered_payment(world, order)
    noted = await world.service.get_order(order.order_id, "u1")
    assert noted.status == model.PENDING_PAYMENT and noted.payment.note == model.NOTE_CAPTURE_UNANSWERED
    world.payments.answers_again()
    world.clock.advance(901)
    await world.service.sweep()
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.status == model.CANCELLED and lapsed.settled
    assert lapsed.payment.status == model.PAY_REFUNDED and lapsed.payment.refunded_fen == 3000
    assert lapsed.payment.note == model.NOTE_LATE_PAYMENT
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_money_taken_behind_a_timed_out_capture_is_refunded_when_the_buyer_cancels(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=True)
    await unanswered_payment(world, order)
    world.payments.answers_again()
    cancelled = await world.service.cancel_order(order.order_id, "u1", "")
    assert cancelled.status == model.CANCELLED and cancelled.settled
    assert cancelled.payment.status == model.PAY_REFUNDED
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_a_timed_out_capture_that_took_nothing_is_voided_and_nothing_refunded(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=False)
    await unanswered_payment(world, order)
    world.payments.answers_again()
    world.payments.declined_references.add(order.payment.reference)  # the payer never paid
    world.clock.advance(901)
    await world.service.sweep()
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.status == model.CANCELLED and lapsed.settled
    assert lapsed.payment.status == model.PAY_VOIDED and lapsed.payment.note == ""
    assert world.payments.refunds == {}


async def test_a_provider_still_unanswering_leaves_the_settlement_to_the_next_pass(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=True)
    await unanswered_payment(world, order)
    world.clock.advance(901)
    await world.service.sweep()
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.status == model.CANCELLED and lapsed.payment_action == model.PAYMENT_SETTLE
    world.payments.answers_again()
    await world.service.sweep()
    settled = await world.service.get_order(order.order_id, "u1")
    assert settled.settled and settled.payment.status == model.PAY_REFUNDED
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_a_retried_payment_after_a_timeout_pays_the_order_once_and_clears_the_note(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=True)
    await unanswered_payment(world, order)
    world.payments.answers_again()
    paid = await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert paid.status == model.PAID and paid.payment.status == model.PAY_CAPTURED and paid.payment.note == ""
    assert len(world.payments.captures) == 1 and world.payments.refunds == {}


async def test_a_late_payment_whose_capture_timed_out_is_settled_by_the_sweep(world):
    order = await world.service.place_order(to_pay())
    world.clock.advance(901)
    await world.service.sweep()  # lapsed: payment voided
    provider_answers_late(world, takes_the_money=True)
    await unanswered_payment(world, order)
    world.payments.answers_again()
    await world.service.sweep()
    settled = await world.service.get_order(order.order_id, "u1")
    assert settled.settled and settled.payment.status == model.PAY_REFUNDED
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_a_timed_out_capture_under_a_reference_not_issued_for_the_order_notes_nothing(world):
    order = await world.service.place_order(to_pay())
    provider_answers_late(world, takes_the_money=False)
    with pytest.raises(DomainError):
        await world.service.confirm_payment(order.order_id, "u1", "someone-elses-reference")
    unchanged = await world.service.get_order(order.order_id, "u1")
    assert unchanged.version == order.version and unchanged.payment.note == ""
