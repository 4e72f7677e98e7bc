"""A confirm from text retried once the gateway no longer holds what its first attempt matched
(a restart, an upgrade, another replica, the preview TTL): the order service holds the order that
attempt placed, and a sentence that now reads otherwise (a newer resolver, a store closed or an
item sold out since) must not refuse the retry of an order that exists."""
from __future__ import annotations

import pytest

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.order.v1 import order_pb2, order_service_pb2
from services.common.errors import AlreadyExists, FailedPrecondition

from gateway.preview import PreviewStore

CONFIRM = gw.OrderByTextRequest(request_id="o1", text="两杯生椰拿铁", confirm=True)


def keep_orders(fakes, make_rpc_error) -> dict[tuple[str, str], order_pb2.Order]:
    """The order service's PlaceOrder key: one order per (user, request_id), another content
    under it REQUEST_ID_REUSED."""
    placed: dict[tuple[str, str], tuple[order_pb2.Order, bytes]] = {}

    async def place(request, **kw):
        await fakes.order._record("PlaceOrder", request, kw)
        key, content = (request.user_id, request.request_id), (request.store_id + "|").encode() + b"".join(
            line.SerializeToString() for line in request.lines
        )
        if key in placed:
            if placed[key][1] != content:
                raise make_rpc_error(AlreadyExists("REQUEST_ID_REUSED", "request_id was used for a different request"))
            return order_service_pb2.PlaceOrderResponse(order=placed[key][0])
        order = order_pb2.Order(
            order_id=f"ord-{len(placed) + 1}", request_id=request.request_id, user_id=request.user_id, store_id=request.store_id,
            store_name="瑞幸", status=order_pb2.ORDER_STATUS_PENDING_PAYMENT, subtotal_fen=3200, card_id="c-alice-1",
            card_discount_fen=2500, payable_fen=700,
            lines=[order_pb2.OrderLine(item_id=line.item_id, item_name="生椰拿铁", quantity=line.quantity) for line in request.lines],
        )
        placed[key] = (order, content)
        return order_service_pb2.PlaceOrderResponse(order=order)

    async def list_orders(request, **kw):
        await fakes.order._record("ListOrders", request, kw)
        mine = [order for (user, _), (order, _) in placed.items() if user == request.user_id]
        return order_service_pb2.ListOrdersResponse(orders=list(reversed(mine)))

    fakes.order.PlaceOrder, fakes.order.ListOrders = place, list_orders
    return placed


def reads_now(fakes, *, store_id: str = "luckin-hz-2", quantity: int = 2, confidence: float = 0.97, matched: bool = True):
    async def match(request, **kw):
        await fakes.catalog._record("MatchIntent", request, kw)
        if not matched:
            return catalog_service_pb2.MatchIntentResponse(
                status=catalog_pb2.INTENT_STATUS_NEEDS_CLARIFICATION, clarification="附近没有营业的店 / nothing open near you"
            )
        return catalog_service_pb2.MatchIntentResponse(
            status=catalog_pb2.INTENT_STATUS_MATCHED,
            proposal=catalog_pb2.OrderProposal(
                store=catalog_pb2.StoreHit(store=catalog_pb2.Store(store_id=store_id)),
                lines=[catalog_pb2.LineSelection(item_id="luckin-coconut-latte", quantity=quantity)],
                quote=catalog_pb2.Quote(store_id=store_id, total_fen=1600 * quantity),
                confidence=confidence,
            ),
            confidence=confidence,
        )

    fakes.catalog.MatchIntent = match


def restart(fakes) -> None:
    fakes.gateway.previews = PreviewStore(clock=fakes.clock)


@pytest.mark.parametrize("now", [
    dict(quantity=6),  # a newer resolver reads the sentence otherwise
    dict(store_id="luckin-hz-2"),  # the first store sold out or closed since
    dict(confidence=0.51),  # a newer gateway takes the reading for a guess (INTENT_UNCERTAIN)
    dict(matched=False),  # nothing open near by any more (INTENT_NEEDS_CLARIFICATION)
])
async def test_a_retry_the_gateway_forgot_answers_the_order_its_first_attempt_placed(fakes, make_rpc_error, now):
    keep_orders(fakes, make_rpc_error)
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    first = (await fakes.gateway.order_by_text("alice", CONFIRM, fakes.options())).order
    restart(fakes)
    reads_now(fakes, **now)
    reply = await fakes.gateway.order_by_text("alice", CONFIRM, fakes.options())
    assert reply.order == first
    p = reply.preview
    assert [(line.item_id, line.quantity) for line in p.proposal.lines] == [("luckin-coconut-latte", 2)]
    assert p.proposal.store.store.store_id == "luckin-hz-1" and p.text == CONFIRM.text
    assert (p.total_fen, p.card_id, p.card_covered_fen, p.payable_fen) == (3200, "c-alice-1", 2500, 700)


async def test_a_confirm_that_placed_nothing_is_still_refused(fakes, make_rpc_error):
    keep_orders(fakes, make_rpc_error)
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    await fakes.gateway.order_by_text("alice", CONFIRM, fakes.options())  # o1 placed; o2 never was
    restart(fakes)
    reads_now(fakes, confidence=0.51)
    with pytest.raises(FailedPrecondition) as info:
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(request_id="o2", text="拿铁", confirm=True), fakes.options())
    assert info.value.reason == "INTENT_UNCERTAIN"
    # Someone else's order under the same request_id is not this user's.
    with pytest.raises(FailedPrecondition):
        await fakes.gateway.order_by_text("bob", CONFIRM, fakes.options())


async def test_a_confirm_the_gateway_remembers_asks_for_no_orders(fakes, make_rpc_error):
    keep_orders(fakes, make_rpc_error)
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    await fakes.gateway.order_by_text("alice", CONFIRM, fakes.options())
    await fakes.gateway.order_by_text("alice", CONFIRM, fakes.options())
    assert fakes.order.requests("ListOrders") == []


async def test_a_refusal_stays_the_answer_when_the_order_service_cannot_be_asked(fakes, make_rpc_error):
    from services.common.admission import Overloaded

    keep_orders(fakes, make_rpc_error)
    await fakes.gateway.join("alice", "r1", "", fakes.options())

    async def busy(request, **kw):
        await fakes.order._record("ListOrders", request, kw)
        raise make_rpc_error(Overloaded(1000))

    fakes.order.ListOrders = busy
    reads_now(fakes, confidence=0.51)
    # A guess, refused: the look for an earlier order is shed, and the user still learns why.
    with pytest.raises(FailedPrecondition) as info:
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(request_id="o9", text="拿铁", confirm=True), fakes.options())
    assert info.value.reason == "INTENT_UNCERTAIN" and len(fakes.order.requests("ListOrders")) == 1


async def test_a_preview_confirm_retried_after_the_gateway_forgot_the_preview_answers_its_order(fakes, make_rpc_error):
    # The app previews, the user confirms by preview_id, the answer is lost, the gateway
    # restarts (an upgrade): the retry of that confirm gets the order its first attempt placed,
    # not PREVIEW_NOT_FOUND for an order that exists.
    keep_orders(fakes, make_rpc_error)
    await fakes.gateway.join("alice", "r1", "", fakes.options())
    preview = (await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(text="两杯生椰拿铁"), fakes.options())).preview
    confirm = gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True)
    first = (await fakes.gateway.order_by_text("alice", confirm, fakes.options())).order
    restart(fakes)
    reply = await fakes.gateway.order_by_text("alice", confirm, fakes.options())
    assert reply.order == first
    assert reply.preview.proposal.store.store.store_id == first.store_id
    # A preview_id the gateway never kept, confirmed under a request_id that placed nothing, or
    # by another user, is still not found.
    from services.common.errors import NotFound

    for user, request in (("alice", gw.OrderByTextRequest(request_id="o2", preview_id=preview.preview_id, confirm=True)),
                          ("bob", confirm)):
        with pytest.raises(NotFound) as info:
            await fakes.gateway.order_by_text(user, request, fakes.options())
        assert info.value.reason == "PREVIEW_NOT_FOUND"
    # A preview asked for again (no confirm) is not looked up among the orders.
    with pytest.raises(NotFound):
        await fakes.gateway.order_by_text("alice", gw.OrderByTextRequest(preview_id=preview.preview_id), fakes.options())
