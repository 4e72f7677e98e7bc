"""A change the store committed reaches the streams (WatchOrder, WatchStoreOrders) even when its
caller is cancelled at that moment. The store told its listener only once the caller's task
resumed after the write; gRPC cancels a handler's task when its client goes away or its
deadline passes, and a cancel landing between the COMMIT and that resumption (one turn of the
event loop, longer under load) kept the committed change from the listener: a merchant's
ACCEPTED or a cancellation stood in the database while the kitchen's WatchStoreOrders stream,
which has no other source, never heard of it."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from services.order import model
from services.order.model import Line, Order, Payment
from services.order.store import SqliteOrderStore


def paid(oid: str) -> Order:
    placing = Order(
        order_id=oid, request_id=f"r-{oid}", request_hash="h", user_id="u1", store_id="s1", store_name="S",
        brand_id="b", campaign_id="c", lines=(Line("latte", "Latte", 1, (), 1500, 1500),), subtotal_fen=1500,
        card_use=model.CARD_BEST, requested_card_id="", status=model.PLACING, create_ms=1, update_ms=1,
    )
    return model.with_status(
        placing, model.PAID, 2, model.ACTOR_USER, card_id="c1", card_discount_fen=1500, payable_fen=0,
        payment=Payment(status=model.PAY_NOT_REQUIRED),
    )


def accept(cur: Order) -> Order:
    return cur if cur.status == model.ACCEPTED else model.with_status(cur, model.ACCEPTED, 3, model.ACTOR_MERCHANT)


@pytest.fixture
async def store(tmp_path):
    heard: list[Order] = []
    s = await SqliteOrderStore.open(tmp_path / "o.db", listener=lambda order, before: heard.append(order))
    s.heard = heard
    yield s
    await s.close()


def cancel_on_commit(store, task_box):
    """Cancels the caller's task the moment its write is answered: after COMMIT, before it resumes."""
    submit = store.db.submit

    def submitting(fn, *args):
        fut = submit(fn, *args)
        fut.add_done_callback(lambda _: task_box[0].cancel())
        return fut

    store.db.submit = submitting
    return lambda: setattr(store.db, "submit", submit)


async def committed_while_cancelled(store, call):
    box = [None]
    restore = cancel_on_commit(store, box)
    box[0] = asyncio.ensure_future(call())
    with pytest.raises(asyncio.CancelledError):
        await box[0]
    restore()


async def test_an_update_committed_as_its_caller_is_cancelled_is_still_heard(store):
    await store.insert_placed(paid("o1"))
    store.heard.clear()
    await committed_while_cancelled(store, lambda: store.update("o1", accept))
    assert (await store.get("o1")).status == model.ACCEPTED  # committed
    assert [o.status for o in store.heard] == [model.ACCEPTED]


async def test_a_keyed_update_committed_as_its_caller_is_cancelled_is_still_heard(store):
    await store.insert_placed(paid("o2"))
    store.heard.clear()
    key = model.request_key(model.UPDATE_ORDER_STATUS, "acc-1", "", 3, "o2", model.ACCEPTED, "")
    await committed_while_cancelled(store, lambda: store.apply_request("o2", key, lambda cur: None, accept))
    assert (await store.get("o2")).status == model.ACCEPTED
    assert [o.status for o in store.heard] == [model.ACCEPTED]


async def test_a_placed_order_committed_as_its_caller_is_cancelled_is_still_heard(store):
    await committed_while_cancelled(store, lambda: store.insert_placed(paid("o3")))
    assert (await store.get("o3")).status == model.PAID
    assert [o.order_id for o in store.heard] == ["o3"]


async def test_an_update_cancelled_while_its_batch_waits_for_the_write_lock_is_still_heard(store, tmp_path):
    # Another connection (an operator's sqlite3 shell) holds the write lock: the batch waits for
    # it on the writer thread, where its caller's cancel used to cancel the write's future too.
    await store.insert_placed(paid("o4"))
    store.heard.clear()
    shell = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    shell.execute("BEGIN IMMEDIATE")
    try:
        caller = asyncio.ensure_future(store.update("o4", accept))
        for _ in range(500):
            if caller.done() or not store.db._pending:
                break
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.02)
        assert not caller.done()  # its batch is waiting for the lock
        batches = store.db.batches
        caller.cancel()
        await asyncio.sleep(0.02)
    finally:
        shell.execute("ROLLBACK")
        shell.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(500):
        if store.db.batches > batches:
            break
        await asyncio.sleep(0.01)
    assert (await store.get("o4")).status == model.ACCEPTED  # committed once the lock was free
    assert [o.status for o in store.heard] == [model.ACCEPTED]
