"""The order service pays through its provider for every order with money due, for the whole
campaign: what the sandbox provider remembers of captures and refunds stays bounded, and a
payment it has forgotten is still captured again idempotently (a capture is a function of its
reference). Over real gRPC with the real card and catalog servers in-process (conftest.py)."""
from __future__ import annotations

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.order import payment

CAMPAIGN_ONE, STORE, LATTE = "it-one", "it-store-1", "it-latte"
ORDERS, REMEMBERED = 60, 20


async def _paid_then_cancelled(stack, n):
    """An order with money due, paid, then cancelled by its buyer (the money goes back)."""
    user = f"payer-{n}"
    placed = (await stack.order.PlaceOrder(
        svc.PlaceOrderRequest(
            request_id=f"place-{n}", user_id=user, store_id=STORE, campaign_id=CAMPAIGN_ONE,
            lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_NONE,
        ),
        metadata=stack.md, timeout=10,
    )).order
    pay = svc.ConfirmPaymentRequest(
        request_id=f"pay-{n}", order_id=placed.order_id, user_id=user, payment_reference=placed.payment.payment_reference
    )
    paid = (await stack.order.ConfirmPayment(pay, metadata=stack.md, timeout=10)).order
    assert paid.status == S.ORDER_STATUS_PAID
    cancelled = (await stack.order.CancelOrder(
        svc.CancelOrderRequest(request_id=f"cancel-{n}", order_id=placed.order_id, user_id=user), metadata=stack.md, timeout=10
    )).order
    assert cancelled.payment.status == S.PAYMENT_STATUS_REFUNDED
    return placed


async def test_the_sandbox_remembers_a_bounded_number_of_payments(stack, monkeypatch):
    monkeypatch.setattr(payment, "REMEMBERED_PAYMENTS", REMEMBERED, raising=False)
    first = None
    for n in range(ORDERS):
        placed = await _paid_then_cancelled(stack, n)
        first = first or placed
        assert len(stack.payments.captures) <= REMEMBERED and len(stack.payments.refunds) <= REMEMBERED
    # The newest are the ones remembered.
    assert placed.payment.payment_reference in stack.payments.captures
    assert first.payment.payment_reference not in stack.payments.captures
    # A capture the sandbox has forgotten is still the same capture.
    again = await stack.payments.capture(first.payment.payment_reference, first.order_id, first.payment.amount_fen)
    assert again == payment.Capture(first.payment.payment_id, first.payment.amount_fen)
