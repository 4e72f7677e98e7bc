"""UpdateOrderStatus's note and CancelOrder's reason are printed on kitchen tickets and shown in
the merchant's app: a control character in them (ESC starting printer commands, NUL ending the
text early, CR overwriting a line) is refused with INVALID_ARGUMENT / CONTROL_CHARACTERS naming
the field, and nothing is applied; line breaks and tabs are how people write and are kept. Both
texts are at most 500 characters (FIELD_TOO_LONG). Over real gRPC with the real card and catalog
servers in-process (conftest.py)."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.errors import error_details

CAMPAIGN_ONE, STORE, LATTE = "it-one", "it-store-1", "it-latte"


async def unpaid_order(stack, user):
    request = svc.PlaceOrderRequest(
        request_id=f"{user}-place", user_id=user, store_id=STORE, campaign_id=CAMPAIGN_ONE,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_NONE,
    )
    return (await stack.order.PlaceOrder(request, metadata=stack.md, timeout=10)).order


async def paid_order(stack, user):
    order = await unpaid_order(stack, user)
    paid = await stack.order.ConfirmPayment(
        svc.ConfirmPaymentRequest(
            request_id=f"{user}-pay", order_id=order.order_id, user_id=user, payment_reference=order.payment.payment_reference,
        ),
        metadata=stack.md, timeout=10,
    )
    assert paid.order.status == S.ORDER_STATUS_PAID
    return paid.order


async def refusal(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    d = error_details(info.value)
    return info.value.code(), d["reason"], [field for field, _ in d["violations"]]


def update(stack, order_id, note):
    return stack.order.UpdateOrderStatus(
        svc.UpdateOrderStatusRequest(order_id=order_id, status=S.ORDER_STATUS_ACCEPTED, note=note),
        metadata=stack.merchant_md, timeout=10,
    )


def cancel(stack, order_id, reason, user=""):
    return stack.order.CancelOrder(
        svc.CancelOrderRequest(order_id=order_id, user_id=user, reason=reason),
        metadata=stack.md if user else stack.merchant_md, timeout=10,
    )


def get(stack, order_id, user):
    return stack.order.GetOrder(svc.GetOrderRequest(order_id=order_id, user_id=user), metadata=stack.md, timeout=10)


@pytest.mark.parametrize("control", ["\x1b", "\x00", "\r", "\x7f", "\x85"])
async def test_a_status_note_with_a_control_character_is_refused_naming_note_and_nothing_changes(stack, control):
    order = await paid_order(stack, "u-note")
    got = await refusal(update(stack, order.order_id, f"少冰{control}[2J"))
    assert got == (grpc.StatusCode.INVALID_ARGUMENT, "CONTROL_CHARACTERS", ["note"])
    assert (await get(stack, order.order_id, "u-note")).order.status == S.ORDER_STATUS_PAID


@pytest.mark.parametrize("control", ["\x1b", "\x00", "\r", "\x7f", "\x85"])
async def test_a_cancel_reason_with_a_control_character_is_refused_naming_reason_and_nothing_changes(stack, control):
    order = await unpaid_order(stack, "u-reason")
    got = await refusal(cancel(stack, order.order_id, f"不要了{control}", user="u-reason"))
    assert got == (grpc.StatusCode.INVALID_ARGUMENT, "CONTROL_CHARACTERS", ["reason"])
    got = await refusal(cancel(stack, order.order_id, f"售罄{control}"))  # the merchant's cancel
    assert got == (grpc.StatusCode.INVALID_ARGUMENT, "CONTROL_CHARACTERS", ["reason"])
    assert (await get(stack, order.order_id, "u-reason")).order.status == S.ORDER_STATUS_PENDING_PAYMENT


async def test_line_breaks_and_tabs_are_kept_in_notes_and_reasons(stack):
    order = await paid_order(stack, "u-lines")
    accepted = (await update(stack, order.order_id, "少冰\n\t不要吸管")).order
    assert accepted.status == S.ORDER_STATUS_ACCEPTED and accepted.history[-1].note == "少冰\n\t不要吸管"
    other = await unpaid_order(stack, "u-lines-2")
    cancelled = (await cancel(stack, other.order_id, "点错了\n换一家", user="u-lines-2")).order
    assert cancelled.status == S.ORDER_STATUS_CANCELLED and cancelled.cancel_reason == "点错了\n换一家"


async def test_notes_and_reasons_longer_than_500_characters_are_refused_naming_the_field(stack):
    order = await paid_order(stack, "u-long")
    assert await refusal(update(stack, order.order_id, "字" * 501)) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG", ["note"])
    assert await refusal(cancel(stack, order.order_id, "字" * 501)) == (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG", ["reason"])
    assert (await update(stack, order.order_id, "字" * 500)).order.status == S.ORDER_STATUS_ACCEPTED
