"""SqliteOrderStore.may_exist: every id with a row says True (rows there before open, rows
inserted since, even while their write is in flight or while the table's ids are still being
read), a fresh id says False once they are read, and a filter past its capacity grows instead
of saturating."""
from __future__ import annotations

import asyncio
import sqlite3
import threading

from services.common.db import Database
from services.order import model, store as order_store
from services.order.model import Line, Order, Payment
from services.order.store import MIGRATIONS, SqliteOrderStore, to_doc


def placing(user: str, request: str) -> Order:
    """A PLACING row under the id the service would give this request."""
    return Order(
        order_id=model.order_id_for(user, request), request_id=request, request_hash="h1", user_id=user,
        store_id="s1", store_name="S", brand_id="b", campaign_id="c", lines=(Line("latte", "Latte", 1, (), 1500, 1500),),
        subtotal_fen=1500, card_use=model.CARD_BEST, requested_card_id="", status=model.PLACING, create_ms=1, update_ms=1,
    )


def paid(user: str, request: str) -> Order:
    return model.with_status(
        placing(user, request), model.PAID, 2, model.ACTOR_USER, card_id="c1", card_discount_fen=1500,
        payable_fen=0, payment=Payment(status=model.PAY_NOT_REQUIRED),
    )


def fresh_ids(n: int) -> list[str]:
    return [model.order_id_for("someone-else", f"new-{i}") for i in range(n)]


def insert_behind_the_store(path, orders: list[Order]) -> None:
    """Rows written with plain SQL while no store is open (as a previous run left them)."""
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, doc, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version) for o in orders],
        )
    db.close()


async def test_ids_inserted_through_the_store_may_exist_and_fresh_ones_do_not(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    await store.ids_read()
    try:
        await store.begin_placement(placing("u1", "r1"))
        assert await store.insert_placed(paid("u2", "r1")) is not None
        assert store.may_exist(model.order_id_for("u1", "r1"))
        assert store.may_exist(model.order_id_for("u2", "r1"))
        assert not any(store.may_exist(i) for i in fresh_ids(100))
    finally:
        await store.close()


async def test_an_id_may_exist_from_the_moment_its_insert_is_submitted(tmp_path, monkeypatch):
    # The handler's read is skipped on a False: the id must say True before the row can be
    # committed, not after the write returns.
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    seen: list[bool] = []
    submit = store.db.submit  # what every write goes through (db.write awaits it)

    def watching_submit(fn, order, *args):
        seen.append(store.may_exist(order.order_id))
        return submit(fn, order, *args)

    monkeypatch.setattr(store.db, "submit", watching_submit)
    try:
        await store.begin_placement(placing("u1", "r1"))
        await store.insert_placed(paid("u1", "r2"))
        assert seen == [True, True]
    finally:
        await store.close()


async def test_opening_the_store_learns_every_row_already_in_the_table(tmp_path):
    path = tmp_path / "o.db"
    store = await SqliteOrderStore.open(path)
    await store.ids_read()
    try:
        await store.insert_placed(paid("u1", "r1"))
    finally:
        await store.close()
    earlier = [paid(f"u{n}", "old") for n in range(50)]
    insert_behind_the_store(path, earlier)
    assert not any(store.may_exist(o.order_id) for o in earlier)  # the old store never saw them

    reopened = await SqliteOrderStore.open(path)
    await reopened.ids_read()
    try:
        assert reopened.may_exist(model.order_id_for("u1", "r1"))
        assert all(reopened.may_exist(o.order_id) for o in earlier)
        assert not any(reopened.may_exist(i) for i in fresh_ids(100))
    finally:
        await reopened.close()


async def test_a_store_that_has_not_read_its_ids_says_any_id_may_exist(tmp_path):
    db = await Database.open(tmp_path / "o.db", MIGRATIONS)
    try:
        store = SqliteOrderStore(db)  # built without open(): it knows nothing, so claims nothing
        assert all(store.may_exist(i) for i in fresh_ids(10))
    finally:
        await db.close()


async def test_a_filter_past_its_capacity_grows_and_still_finds_every_id(tmp_path, monkeypatch):
    monkeypatch.setattr(order_store, "MIN_KNOWN_CAPACITY", 16)
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    await store.ids_read()
    try:
        ids = []
        for n in range(300):  # ~19 times the first filter's size
            o = paid(f"u{n}", "r1")
            await store.insert_placed(o)
            ids.append(o.order_id)
        assert all(store.may_exist(i) for i in ids)
        # A single filter of 16 ids holding 300 would say True to nearly anything.
        assert sum(store.may_exist(i) for i in fresh_ids(200)) < 20
    finally:
        await store.close()



async def test_the_store_serves_before_the_table_is_read_and_misses_no_id_inserted_meanwhile(tmp_path, monkeypatch):
    path = tmp_path / "o.db"
    store = await SqliteOrderStore.open(path)
    await store.close()
    earlier = [paid(f"u{n}", "old") for n in range(50)]
    insert_behind_the_store(path, earlier)
    release = threading.Event()
    real = order_store._known_order_ids

    def slow_scan(conn):
        release.wait(10)  # a table of millions of rows: seconds of scanning
        return real(conn)

    monkeypatch.setattr(order_store, "_known_order_ids", slow_scan)
    store = await SqliteOrderStore.open(path)
    try:
        # Open already: it serves, and since it knows nothing yet it claims nothing.
        assert all(store.may_exist(i) for i in fresh_ids(10))
        during = [paid(f"u{n}", "during") for n in range(30)]
        for o in during:
            assert await store.insert_placed(o) is not None
        release.set()
        await store.ids_read()
        after = paid("u-after", "r1")
        await store.insert_placed(after)
        assert all(store.may_exist(o.order_id) for o in [*earlier, *during, after])
        assert not any(store.may_exist(i) for i in fresh_ids(100))
    finally:
        release.set()
        await store.close()


async def test_a_failed_read_of_the_ids_leaves_every_id_possible(tmp_path, monkeypatch):
    def broken(conn):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(order_store, "_known_order_ids", broken)
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        await store.ids_read()
        await store.insert_placed(paid("u1", "r1"))
        assert all(store.may_exist(i) for i in fresh_ids(10))  # every request reads its row
        assert (await store.get(model.order_id_for("u1", "r1"))).status == model.PAID
    finally:
        await store.close()


async def test_closing_while_the_ids_are_read_does_not_hang(tmp_path, monkeypatch):
    release = threading.Event()

    def slow_scan(conn):
        release.wait(0.5)
        return KnownOrderIdsStub()

    class KnownOrderIdsStub:
        pass

    monkeypatch.setattr(order_store, "_known_order_ids", slow_scan)
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    await asyncio.wait_for(store.close(), 5)
