"""An UpdateOrderStatus or CancelOrder of an order id the store's filter of order ids says has no
row is answered ORDER_NOT_FOUND at once, without a write queued for the store's single writer (a
merchant's script trying made-up ids used to take a place in the batches orders are written in,
only to be told NOT_FOUND from inside them). The filter never says "no row" for one that exists:
until the table's ids are read at start every id goes to the writer, as before."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from services.common.errors import InvalidArgument, NotFound
from services.common.merchant_grant import MerchantScope
from services.order import model, store as order_store
from services.order.handlers import OrderService
from services.order.model import Line, Order, Payment
from services.order.store import SqliteOrderStore, to_doc

HQ = MerchantScope("hq", frozenset({"b"}), frozenset())


def paid(user: str, request: str) -> Order:
    placing = Order(
        order_id=model.order_id_for(user, request), request_id=request, request_hash="h1", user_id=user,
        store_id="s1", store_name="S", brand_id="b", campaign_id="c", lines=(Line("latte", "Latte", 1, (), 1500, 1500),),
        subtotal_fen=1500, card_use=model.CARD_NONE, requested_card_id="", status=model.PLACING, create_ms=1, update_ms=1,
    )
    return model.with_status(
        placing, model.PAID, 2, model.ACTOR_USER, card_discount_fen=0, payable_fen=1500,
        payment=Payment(status=model.PAY_CAPTURED, amount_fen=1500),
    )


def made_up(n: int) -> list[str]:
    return [model.order_id_for("nobody", f"guess-{i}") for i in range(n)]


def order_writes(store, monkeypatch) -> list[str]:
    """The names of the order-changing writes queued from now on."""
    queued: list[str] = []
    submit = store.db.submit

    def counting(fn, *args):
        if fn.__name__ in ("_update", "_apply_request"):
            queued.append(fn.__name__)
        return submit(fn, *args)

    monkeypatch.setattr(store.db, "submit", counting)
    return queued


def refusals(service: OrderService, order_id: str):
    return [
        service.update_status(order_id, model.ACCEPTED, "", "acc-1", merchant=HQ),
        service.update_status(order_id, model.ACCEPTED, "", merchant=None),
        service.cancel_order(order_id, "", "售罄", "c-1", merchant=HQ),
        service.cancel_order(order_id, "u1", "changed my mind"),
    ]


async def assert_not_found(call) -> None:
    with pytest.raises(NotFound) as err:
        await call
    assert err.value.reason == "ORDER_NOT_FOUND"


async def test_made_up_order_ids_are_not_found_without_queueing_a_write(world, monkeypatch):
    await world.store.ids_read()
    real = await world.store.insert_placed(paid("u1", "r1"))
    writes = order_writes(world.store, monkeypatch)
    for order_id in made_up(25):
        for call in refusals(world.service, order_id):
            await assert_not_found(call)
    assert writes == []
    # An order that exists is still found and moved, through the writer.
    moved = await world.service.update_status(real.order_id, model.ACCEPTED, "", "acc-1", merchant=HQ)
    assert moved.status == model.ACCEPTED and writes == ["_apply_request"]
    # Bad arguments are still told as such first.
    with pytest.raises(InvalidArgument):
        await world.service.update_status(made_up(1)[0], "NOT_A_STATUS", "")


async def test_until_the_ids_are_read_every_id_goes_to_the_writer_and_existing_orders_are_found(world, tmp_path, monkeypatch):
    path = tmp_path / "restarted.db"
    first = await SqliteOrderStore.open(path)
    await first.close()
    earlier = [paid(f"u{n}", "old") for n in range(5)]
    with sqlite3.connect(path) as db:  # rows a previous run left
        db.executemany(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, doc, version, store_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version, o.store_id)
             for o in earlier],
        )
    db.close()
    release = threading.Event()
    scan = order_store._known_order_ids

    def slow_scan(conn):
        release.wait(10)  # a table of millions of rows: seconds of reading
        return scan(conn)

    monkeypatch.setattr(order_store, "_known_order_ids", slow_scan)
    store = await SqliteOrderStore.open(path, clock=world.clock)
    service = OrderService(store, world.card, world.catalog, world.payments, clock=world.clock, config=world.service.config)
    try:
        writes = order_writes(store, monkeypatch)
        for call in refusals(service, made_up(1)[0]):
            await assert_not_found(call)
        assert len(writes) == 4  # not known yet to be absent: answered from inside the writer, as before
        during = paid("u-during", "r1")
        assert await store.insert_placed(during) is not None
        assert (await service.update_status(earlier[0].order_id, model.ACCEPTED, "", "a0", merchant=HQ)).status == model.ACCEPTED
        release.set()
        await store.ids_read()

        writes.clear()
        for order_id in made_up(10):
            for call in refusals(service, order_id):
                await assert_not_found(call)
        assert writes == []
        # Rows there before the start, and rows written while the ids were read, are found.
        assert (await service.update_status(earlier[1].order_id, model.ACCEPTED, "", "a1", merchant=HQ)).status == model.ACCEPTED
        assert (await service.update_status(during.order_id, model.ACCEPTED, "", "a2", merchant=HQ)).status == model.ACCEPTED
        cancelled = await service.cancel_order(earlier[2].order_id, "", "售罄", "c-2", merchant=HQ)
        assert cancelled.status == model.CANCELLED
        assert (await service.cancel_order(earlier[3].order_id, "u3", "changed my mind")).status == model.CANCELLED
    finally:
        release.set()
        await store.close()
