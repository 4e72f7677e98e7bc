"""A merchant's systems, holding only their grant, moving or cancelling made-up order ids are told
NOT_FOUND ORDER_NOT_FOUND without a write queued for the order store's single writer (the one
that writes every order): the store's filter of order ids says no such row exists. Orders that
exist, and other stores' orders, are answered as before."""
from __future__ import annotations

from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.order import model
from tests.integration.order.merchant_calls import OTHER_STORE, STORE, grant_only, place, refused, status


def order_writes(store, monkeypatch) -> list[str]:
    queued: list[str] = []
    submit = store.db.submit

    def counting(fn, *args):
        if fn.__name__ in ("_update", "_apply_request"):
            queued.append(fn.__name__)
        return submit(fn, *args)

    monkeypatch.setattr(store.db, "submit", counting)
    return queued


async def test_made_up_order_ids_are_not_found_without_a_write(stack, monkeypatch):
    ours = await place(stack, "amy", STORE)
    theirs = await place(stack, "bob", OTHER_STORE)
    await stack.service.store.ids_read()
    writes = order_writes(stack.service.store, monkeypatch)
    md = grant_only(stack, stores=[STORE])
    for n in range(20):
        order_id = model.order_id_for("nobody", f"guess-{n}")
        move = svc.UpdateOrderStatusRequest(request_id=f"u{n}", order_id=order_id, status=S.ORDER_STATUS_ACCEPTED)
        assert await refused(stack.order.UpdateOrderStatus(move, metadata=md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
        cancel = svc.CancelOrderRequest(request_id=f"c{n}", order_id=order_id, reason="guess")
        assert await refused(stack.order.CancelOrder(cancel, metadata=md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    assert writes == []

    # Another store's order exists: the writer reads it and finds it is not this grant's.
    move = svc.UpdateOrderStatusRequest(request_id="t", order_id=theirs.order_id, status=S.ORDER_STATUS_ACCEPTED)
    assert await refused(stack.order.UpdateOrderStatus(move, metadata=md)) == ("NOT_FOUND", "ORDER_NOT_FOUND")
    move = svc.UpdateOrderStatusRequest(request_id="o", order_id=ours.order_id, status=S.ORDER_STATUS_ACCEPTED)
    assert (await stack.order.UpdateOrderStatus(move, metadata=md)).order.status == S.ORDER_STATUS_ACCEPTED
    assert writes == ["_apply_request", "_apply_request"]
    assert await status(stack, theirs, "bob") == S.ORDER_STATUS_PAID
