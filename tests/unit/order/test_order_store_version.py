"""The row version as a column (migration 2): backfilled from the doc, kept equal to it by every
write, and the compare-and-set the saga's PAID write relies on under concurrent writers."""
from __future__ import annotations

import asyncio
import sqlite3

from services.common.db import Database
from services.order import model
from services.order.model import Line, Order, Payment
from services.order.store import MIGRATIONS, SYNCHRONOUS, SqliteOrderStore, to_doc


def draft(oid: str = "ord_1", user: str = "u1") -> Order:
    return Order(
        order_id=oid, request_id=f"r-{oid}", request_hash="h1", user_id=user, store_id="s1", store_name="茶饮",
        brand_id="b", campaign_id="c", lines=(Line("latte", "拿铁", 1, (), 1500, 1500),), subtotal_fen=1500,
        card_use=model.CARD_BEST, requested_card_id="", status=model.PLACING, create_ms=1, update_ms=1,
    )


def pay(cur: Order) -> Order:
    if cur.status != model.PLACING:
        return cur
    return model.with_status(
        cur, model.PAID, 2, model.ACTOR_USER, card_id="c1", card_discount_fen=1500, payable_fen=0,
        payment=Payment(status=model.PAY_NOT_REQUIRED),
    )


def bump(cur: Order) -> Order:
    """A change that always applies: every caller's write must land exactly once."""
    return model.revised(cur, version=cur.version + 1, update_ms=cur.update_ms + 1)


def versions(path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT order_id, version, json_extract(doc, '$.v') FROM orders ORDER BY order_id").fetchall()


async def test_a_store_created_before_the_version_column_gets_it_backfilled_from_each_doc(tmp_path):
    path = tmp_path / "order.db"
    rows = [
        draft("ord_a"),
        pay(draft("ord_b")),
        model.with_status(pay(draft("ord_c")), model.ACCEPTED, 3, model.ACTOR_MERCHANT),
    ]

    def insert_as_before(conn, o: Order) -> None:
        conn.execute(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, expire_ms, pending, doc)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?)",
            (o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o)),
        )

    old = await Database.open(path, MIGRATIONS[:1], synchronous=SYNCHRONOUS)
    try:
        for o in rows:
            await old.write(insert_as_before, o)
    finally:
        await old.close()

    store = await SqliteOrderStore.open(path)
    try:
        assert versions(path) == [("ord_a", 1, 1), ("ord_b", 2, 2), ("ord_c", 3, 3)]
        # Migration 3 indexed the old rows for the sweep too: the PLACING one is found.
        assert [o.order_id for o in await store.due(now_ms=10, placing_before_ms=10, limit=10)] == ["ord_a"]
        # The backfilled column is what the compare-and-set reads: the saga's copy of a row
        # written before the migration still takes the fast path (mutate runs once) ...
        calls = []

        def counted(cur: Order) -> Order:
            calls.append(cur.version)
            return pay(cur)

        paid = await store.update("ord_a", counted, expect=rows[0])
        assert paid.status == model.PAID and calls == [1]
        assert await store.get("ord_a") == paid
        # ... and a stale copy still falls back to the stored row.
        accepted = await store.update("ord_b", lambda cur: model.with_status(cur, model.ACCEPTED, 4, model.ACTOR_MERCHANT), expect=rows[0])
        assert accepted.version == 3 and (await store.get("ord_b")).status == model.ACCEPTED
        assert versions(path) == [("ord_a", 2, 2), ("ord_b", 3, 3), ("ord_c", 3, 3)]
    finally:
        await store.close()


async def test_opening_the_migrated_store_again_keeps_every_version(tmp_path):
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    try:
        placed, _ = await store.begin_placement(draft())
        await store.update("ord_1", pay, expect=placed)
    finally:
        await store.close()
    store = await SqliteOrderStore.open(path)
    try:
        assert versions(path) == [("ord_1", 2, 2)]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        await store.close()


async def test_a_hundred_writers_holding_the_same_copy_each_land_exactly_once(tmp_path):
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    try:
        placed, _ = await store.begin_placement(draft())
        # All hold version 1: one compare-and-set wins, every other one must see the column
        # moved on and apply its change to the stored row instead of overwriting it.
        stale = [store.update("ord_1", bump, expect=placed) for _ in range(60)]
        fresh = [store.update("ord_1", bump) for _ in range(40)]
        results = await asyncio.gather(*stale, *fresh)
        assert sorted(r.version for r in results) == list(range(2, 102))
        final = await store.get("ord_1")
        assert final.version == 101 and final.update_ms == 1 + 100
        assert versions(path) == [("ord_1", 101, 101)]
    finally:
        await store.close()


async def test_concurrent_placements_and_their_paid_writes_keep_column_and_doc_equal(tmp_path):
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    try:
        async def place(n: int) -> Order:
            placed, fresh = await store.begin_placement(draft(f"ord_{n:03d}", user=f"u{n % 7}"))
            assert fresh
            # A concurrent sweep-like writer races the saga on every third order.
            racing = store.update(placed.order_id, bump) if n % 3 == 0 else asyncio.sleep(0)
            done, _ = await asyncio.gather(store.update(placed.order_id, pay, expect=placed), racing)
            return done

        done = await asyncio.gather(*(place(n) for n in range(200)))
        stored = {o.order_id: o for o in await asyncio.gather(*(store.get(d.order_id) for d in done))}
        assert all(o.status == model.PAID for o in stored.values())
        # Raced orders carry both changes (PAID and the bump), whatever their order.
        assert {o.version for n, o in enumerate(stored[f"ord_{n:03d}"] for n in range(200)) if n % 3 == 0} == {3}
        assert all(v == doc_v for _, v, doc_v in versions(path))
    finally:
        await store.close()


async def test_a_retry_after_an_aborted_attempt_writes_the_next_version_to_the_column(tmp_path):
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    try:
        placed, _ = await store.begin_placement(draft())
        await store.update("ord_1", lambda cur: model.revised(cur, status=model.ABORTED, version=cur.version + 1))
        again, fresh = await store.begin_placement(draft())
        assert fresh and again.attempt == 1 and again.version == 3
        paid = await store.update("ord_1", pay, expect=again)
        assert paid.version == 4 and versions(path) == [("ord_1", 4, 4)]
    finally:
        await store.close()


async def test_the_sweep_finds_exactly_its_rows_through_the_partial_indexes(tmp_path):
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    try:
        def at(o: Order, **changes) -> Order:
            return model.revised(o, **changes)

        pending_payment = lambda o, expire: model.with_status(  # noqa: E731
            o, model.PENDING_PAYMENT, 5, model.ACTOR_USER, payment=Payment(amount_fen=100, status=model.PAY_PENDING, expire_ms=expire)
        )
        rows = {
            "ord_stale_placing": draft("ord_stale_placing"),
            "ord_fresh_placing": at(draft("ord_fresh_placing"), update_ms=5_000, create_ms=5_000),
            "ord_lapsed": pending_payment(draft("ord_lapsed"), 900),
            "ord_payable": pending_payment(draft("ord_payable"), 9_000),
            "ord_paid": pay(draft("ord_paid")),
            "ord_paid_owing": at(pay(draft("ord_paid_owing")), card_action=model.CARD_CONFIRM),
            "ord_aborted": at(draft("ord_aborted"), status=model.ABORTED, version=2),
        }
        for oid, o in rows.items():
            placed, _ = await store.begin_placement(draft(oid))
            if o != placed:
                await store.update(oid, lambda cur, o=o: o, expect=placed)
        due = await store.due(now_ms=1_000, placing_before_ms=2_000, limit=100)
        assert sorted(o.order_id for o in due) == ["ord_lapsed", "ord_paid_owing", "ord_stale_placing"]
        with sqlite3.connect(path) as db:
            indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
            from services.order.store import _DUE

            plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + _DUE, (2_000, "", 1_000, "", "", 100)))
        assert "orders_by_status" not in indexes
        assert {"orders_placing", "orders_awaiting_payment", "orders_pending"} <= indexes
        assert "orders_placing" in plan and "orders_awaiting_payment" in plan, plan
    finally:
        await store.close()
