"""A store's orders (migration 5): the store as a column, backfilled from each doc, set by every
insert, and listed newest first by status."""
from __future__ import annotations

import sqlite3
from dataclasses import replace

from services.common.db import Database
from services.order import model
from services.order.store import MIGRATIONS, SYNCHRONOUS, SqliteOrderStore, to_doc

from tests.unit.order.test_order_store_version import draft, pay


def placed(oid: str, store: str, at: int):
    return pay(replace(draft(oid, user=f"u-{oid}"), store_id=store, brand_id=f"brand-of-{store}", create_ms=at, update_ms=at))


async def test_rows_from_before_the_column_are_listed_by_store_after_the_upgrade(tmp_path):
    path = tmp_path / "order.db"
    old_rows = [placed("ord_a", "s1", 1), placed("ord_b", "s2", 2), placed("ord_c", "s1", 3)]

    def insert_as_before(conn, o) -> None:
        conn.execute(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, expire_ms, pending, doc, version)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
            (o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version),
        )

    old = await Database.open(path, MIGRATIONS[:4], synchronous=SYNCHRONOUS)
    try:
        for o in old_rows:
            await old.write(insert_as_before, o)
    finally:
        await old.close()

    store = await SqliteOrderStore.open(path)
    try:
        new, _ = await store.begin_placement(replace(draft("ord_d", user="u-d"), store_id="s1", brand_id="brand-of-s1", create_ms=4, update_ms=4))
        await store.update("ord_d", pay, expect=new)
        everything = model.LIVE_STATUSES
        assert [o.order_id for o in await store.list_for_store("s1", everything, 10, None)] == ["ord_d", "ord_c", "ord_a"]
        assert [o.order_id for o in await store.list_for_store("s1", everything, 10, (3, "ord_c"))] == ["ord_a"]
        assert [o.order_id for o in await store.list_for_store("s2", (model.ACCEPTED,), 10, None)] == []
        assert await store.store_has_brand("s2", {"brand-of-s2"}) is True and await store.store_has_brand("s9", {"brand-of-s2"}) is None
        assert await store.store_has_brand("s2", {"rival"}) is False and await store.store_has_brand("s2", frozenset()) is False
        assert [o.order_id for o in await store.list_for_store("s1", everything, 10, None, {"brand-of-s1"})] == ["ord_d", "ord_c", "ord_a"]
        assert await store.list_for_store("s1", everything, 10, None, {"rival"}) == []
        # A PLACING row is not in the merchant's queue until it is paid.
        await store.begin_placement(replace(draft("ord_e", user="u-e"), store_id="s1", create_ms=5, update_ms=5))
        assert "ord_e" not in [o.order_id for o in await store.list_for_store("s1", everything, 10, None)]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert dict(db.execute("SELECT order_id, store_id FROM orders")) == {
            "ord_a": "s1", "ord_b": "s2", "ord_c": "s1", "ord_d": "s1", "ord_e": "s1",
        }
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT order_id FROM orders WHERE store_id = 's1' ORDER BY create_ms DESC, order_id DESC"
        ).fetchall()
        assert "orders_by_store" in str(plan)
