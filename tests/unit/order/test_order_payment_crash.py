"""A process killed between the payment provider's capture and the write that records it: the
money has left the buyer's account, the order still waits for payment. If the buyer never
retries ConfirmPayment, the order lapses (or is cancelled) after the restart, and the money taken
must then be given back, not kept for an order that does not stand."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.order import model
from tests.unit.order.test_order_payment_unanswered import to_pay
from tests.unit.order.test_order_unwritten import restarted


def crash_after_the_capture(world) -> None:
    """The next capture is taken by the provider, then the process dies before writing it."""
    inner = world.payments.capture

    async def capture_then_die(reference, order_id, amount_fen):
        world.payments.capture = inner
        await inner(reference, order_id, amount_fen)
        raise asyncio.CancelledError()

    world.payments.capture = capture_then_die


async def test_money_captured_just_before_a_crash_is_refunded_when_the_order_lapses_after_the_restart(world):
    order = await world.service.place_order(to_pay())
    crash_after_the_capture(world)
    with pytest.raises(asyncio.CancelledError):
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert order.payment.reference in world.payments.captures  # the provider took the money
    service = restarted(world)
    world.clock.advance(901)
    await service.sweep(startup=True)
    lapsed = await service.get_order(order.order_id, "u1")
    assert lapsed.status == model.CANCELLED and lapsed.settled
    assert lapsed.payment.status == model.PAY_REFUNDED and lapsed.payment.refunded_fen == 3000
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_money_captured_just_before_a_crash_is_refunded_when_the_buyer_cancels_after_the_restart(world):
    order = await world.service.place_order(to_pay())
    crash_after_the_capture(world)
    with pytest.raises(asyncio.CancelledError):
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference, request_id="pay-1")
    service = restarted(world)
    cancelled = await service.cancel_order(order.order_id, "u1", "")
    assert cancelled.status == model.CANCELLED and cancelled.settled
    assert cancelled.payment.status == model.PAY_REFUNDED
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_a_late_payment_captured_just_before_a_crash_is_refunded_by_the_sweep_after_the_restart(world):
    order = await world.service.place_order(to_pay())
    world.clock.advance(901)
    await world.service.sweep()  # lapsed: payment voided
    crash_after_the_capture(world)
    with pytest.raises(asyncio.CancelledError):
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    service = restarted(world)
    await service.sweep(startup=True)
    settled = await service.get_order(order.order_id, "u1")
    assert settled.settled and settled.payment.status == model.PAY_REFUNDED
    assert world.payments.refunds == {order.payment.payment_id: 3000}


async def test_a_retry_after_the_restart_pays_the_order_once_and_leaves_no_note(world):
    order = await world.service.place_order(to_pay())
    crash_after_the_capture(world)
    with pytest.raises(asyncio.CancelledError):
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference, request_id="pay-1")
    service = restarted(world)
    paid = await service.confirm_payment(order.order_id, "u1", order.payment.reference, request_id="pay-1")
    assert paid.status == model.PAID and paid.payment.status == model.PAY_CAPTURED and paid.payment.note == ""
    assert len(world.payments.captures) == 1 and world.payments.refunds == {}


async def test_a_declined_payment_leaves_no_note_and_the_lapse_asks_the_provider_nothing(world):
    order = await world.service.place_order(to_pay())
    world.payments.declined_references.add(order.payment.reference)
    with pytest.raises(DomainError) as info:
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert info.value.reason == "PAYMENT_DECLINED"
    declined = await world.service.get_order(order.order_id, "u1")
    assert declined.status == model.PENDING_PAYMENT and declined.payment.note == ""
    world.clock.advance(901)
    await world.service.sweep()
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.settled and lapsed.payment.status == model.PAY_VOIDED and not lapsed.payment_action


async def test_a_declined_late_payment_leaves_the_lapsed_order_settled(world):
    order = await world.service.place_order(to_pay())
    world.clock.advance(901)
    await world.service.sweep()  # lapsed: payment voided
    world.payments.declined_references.add(order.payment.reference)
    with pytest.raises(DomainError) as info:
        await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    assert info.value.reason == "PAYMENT_DECLINED"
    lapsed = await world.service.get_order(order.order_id, "u1")
    assert lapsed.settled and lapsed.payment.status == model.PAY_VOIDED and lapsed.payment.note == ""


async def test_a_provider_timing_out_on_the_sweeps_refund_is_a_warning_and_the_next_pass_refunds(world, caplog):
    # A slow provider is no bug of ours: it was an ERROR line with a traceback on every pass.
    from services.order.payment import PaymentTimeout

    order = await world.service.place_order(to_pay())
    await world.service.confirm_payment(order.order_id, "u1", order.payment.reference)
    refund = world.payments.refund
    slow_answers = 2  # the cancel's own refund, then the sweep's first

    async def refund_after_timeouts(*args, **kwargs):
        nonlocal slow_answers
        if slow_answers:
            slow_answers -= 1
            raise PaymentTimeout()
        return await refund(*args, **kwargs)

    world.payments.refund = refund_after_timeouts
    await world.service.cancel_order(order.order_id, "u1", "")  # the refund is left to the sweep
    caplog.clear()
    report = await world.service.sweep()
    assert report.failed == 1
    assert [r.levelname for r in caplog.records if r.levelname == "ERROR"] == []
    assert all(r.exc_info is None for r in caplog.records)
    await world.service.sweep()
    done = await world.service.get_order(order.order_id, "u1")
    assert done.payment.status == model.PAY_REFUNDED and done.settled
