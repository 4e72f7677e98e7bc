"""OrderByText as a preview while the card service cannot be reached: the card lookup only tells
what a confirm would cost, so the preview is still shown, its card part marked unknown
(gateway.proto OrderPreview.card_unknown); a confirm still refuses while the card service is down."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.order.v1 import order_pb2, order_service_pb2
from services.common.errors import PermissionDenied, Unavailable



def connection_refused() -> grpc.aio.AioRpcError:
    """What the channel raises for a card service that is down: UNAVAILABLE without status details."""
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "failed to connect to all addresses")


@pytest.mark.parametrize("down", ["refused", "overloaded"])
async def test_a_preview_is_shown_with_its_card_part_unknown_when_the_card_service_is_down(fakes, make_rpc_error, down):
    await fakes.gateway.join("alice", "r1", "", fakes.options())  # she has a card: the preview cannot tell
    fakes.card.fail["ListCards"] = connection_refused() if down == "refused" else make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))

    reply = await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())

    p = reply.preview
    assert p.proposal.store.store.store_id == "luckin-hz-1" and p.preview_id.startswith("pv_")
    assert (p.total_fen, p.card_id, p.card_covered_fen, p.payable_fen) == (3200, "", 0, 3200)
    assert p.card_unknown and p.clarification == ""
    assert not reply.HasField("order") and fakes.order.requests("PlaceOrder") == []


async def test_a_preview_with_its_card_known_carries_no_note(fakes):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    p = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    assert p.card_id == "c-alice-1" and not p.card_unknown


async def test_a_card_answer_that_is_not_an_outage_still_fails_the_preview(fakes, make_rpc_error):
    fakes.card.fail["ListCards"] = make_rpc_error(PermissionDenied("NOT_INTERNAL", "no"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_confirming_the_preview_refuses_while_the_card_service_is_down_and_uses_the_best_card_once_back(fakes, make_rpc_error):
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.card.fail["ListCards"] = connection_refused()
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    # The order service reserves the card itself, and refuses while it cannot reach the card service.
    fakes.order.fail["PlaceOrder"] = make_rpc_error(Unavailable("UPSTREAM_UNAVAILABLE", "card service down", 1000))
    confirm = gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fakes.gateway.order_by_text("alice", confirm, fakes.options())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE

    del fakes.order.fail["PlaceOrder"], fakes.card.fail["ListCards"]
    placed = order_pb2.Order(order_id="o-1", user_id="alice", status=order_pb2.ORDER_STATUS_PAID, card_id="c-alice-1",
                             subtotal_fen=3200, card_discount_fen=2500, payable_fen=700)

    async def place(request, **kw):
        await fakes.order._record("PlaceOrder", request, kw)
        return order_service_pb2.PlaceOrderResponse(order=placed)

    fakes.order.PlaceOrder = place
    reply = await fakes.gateway.order_by_text("alice", confirm, fakes.options())
    # The preview showed no card, so none was promised: the best card there is by then.
    assert fakes.order.requests("PlaceOrder")[-1].card_use == order_pb2.CARD_USE_BEST
    p = reply.preview
    assert (p.card_id, p.card_covered_fen, p.payable_fen, p.card_unknown) == ("c-alice-1", 2500, 700, False)


async def test_a_confirm_straight_from_text_does_not_ask_the_card_service(fakes, make_rpc_error):
    fakes.card.fail["ListCards"] = connection_refused()
    fakes.order.fail["PlaceOrder"] = make_rpc_error(Unavailable("UPSTREAM_UNAVAILABLE", "card service down", 1000))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True), fakes.options())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert fakes.card.requests("ListCards") == []


async def test_a_card_service_that_answers_nothing_in_time_leaves_the_preview_shown_without_its_card_part(fakes):
    """A frozen card service (kill -STOP, a stalled disk) answers nothing: its lookup used to get
    the caller's whole deadline and fail the preview DEADLINE_EXCEEDED with it."""
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    given: list[float] = []

    async def frozen(request, *, timeout=None, metadata=None):
        given.append(timeout)
        await asyncio.sleep(timeout)  # what the channel does for a call that gets no answer
        raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "Deadline Exceeded")

    fakes.card.ListCards = frozen
    reply = await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options(0.4))

    p = reply.preview
    assert p.preview_id.startswith("pv_") and (p.total_fen, p.card_id, p.payable_fen) == (3200, "", 3200)
    assert p.card_unknown
    assert given and given[0] <= 0.2  # at most half of what the caller had left


async def test_a_card_service_refusing_the_gateways_own_credential_leaves_the_preview_shown_without_its_card_part(fakes, make_rpc_error):
    """MIANDAN_INTERNAL_TOKEN rotated on the card service before the gateway: the card service
    cannot be asked, as when it is down (the wallet's lottery part is treated the same way)."""
    from services.common.auth import CREDENTIAL_INVALID

    await fakes.gateway.join("alice", "r1", "", fakes.options())
    fakes.card.fail["ListCards"] = make_rpc_error(CREDENTIAL_INVALID)

    p = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview

    assert p.preview_id.startswith("pv_") and (p.card_id, p.payable_fen) == ("", 3200) and p.card_unknown
