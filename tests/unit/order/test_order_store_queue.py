"""A store's queue (migration 7): ListStoreOrders of an order status the merchant still acts on
(PAID, ACCEPTED, PREPARING, READY) reads the orders in the queue, not the store's whole history.
Before, a queue shorter than a page was found by reading every order the store ever had, newest
first, on each poll: its cost grew by the store's orders of every day of the campaign."""
from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from services.common.db import Database
from services.order import model
from services.order import store as order_store
from services.order.store import SqliteOrderStore, to_doc

from tests.unit.order.sqlite_steps import steps
from tests.unit.order.test_order_store_version import draft, pay

QUEUE = (model.PAID, model.ACCEPTED, model.PREPARING, model.READY)


def order(n: int, store: str, status: str):
    o = pay(replace(draft(f"ord_{store}_{n:06d}", user=f"u{n}"), store_id=store, brand_id=f"brand-of-{store}", create_ms=n, update_ms=n))
    return replace(o, status=status)


def fill(path, store: str, history: int, queue: list[tuple[int, str]]) -> None:
    """`history` completed orders of `store` (and as many of another store), then the queue."""
    done = to_doc(order(0, store, model.COMPLETED))  # one doc for the history: it is never read back
    rows = [(f"ord_{s}_{n:06d}", f"u-{s}-{n}", f"r{n}", model.COMPLETED, n, n, done, 2, s) for s in (store, "elsewhere") for n in range(history)]
    for n, status in queue:
        o = order(n, store, status)
        rows.append((o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version, o.store_id))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, expire_ms, pending, doc, version, store_id)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
            rows,
        )


@pytest.fixture
async def opened(tmp_path):
    """A path whose store has run every migration, and the store open on it."""
    path = tmp_path / "order.db"
    store = await SqliteOrderStore.open(path)
    yield path, store
    await store.close()


async def test_the_queue_lists_its_orders_newest_first_by_status(opened):
    path, store = opened
    fill(path, "s1", 50, [(100, model.PAID), (101, model.ACCEPTED), (102, model.PAID), (103, model.READY)])
    ids = lambda orders: [o.order_id for o in orders]  # noqa: E731
    assert ids(await store.list_for_store("s1", (model.PAID,), 10, None)) == ["ord_s1_000102", "ord_s1_000100"]
    assert ids(await store.list_for_store("s1", (model.PAID,), 10, (102, "ord_s1_000102"))) == ["ord_s1_000100"]
    assert ids(await store.list_for_store("s1", (model.READY,), 10, None, {"brand-of-s1"})) == ["ord_s1_000103"]
    assert await store.list_for_store("s1", (model.READY,), 10, None, {"rival"}) == []
    assert len(await store.list_for_store("s1", (model.COMPLETED,), 100, None)) == 50  # the history, as before
    assert len(await store.list_for_store("s1", model.LIVE_STATUSES, 100, None)) == 54
    # An order moves through the queue and leaves it when it is completed.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE orders SET status = 'PREPARING' WHERE order_id = 'ord_s1_000102'")
    assert ids(await store.list_for_store("s1", (model.PREPARING,), 10, None)) == ["ord_s1_000102"]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE orders SET status = 'COMPLETED' WHERE order_id = 'ord_s1_000102'")
    assert await store.list_for_store("s1", (model.PREPARING,), 10, None) == []
    assert len(await store.list_for_store("s1", (model.COMPLETED,), 100, None)) == 51


def steps_of_listing(path, status: str, brands=None) -> int:
    """SQLite virtual-machine steps (in thousands) of one page of the store's orders by status."""
    found, count = steps(path, order_store._list_for_store, "s1", (status,), 51, None, brands)
    assert [o.status for o in found] == [status] * 3
    return count


@pytest.mark.parametrize("status", QUEUE)
async def test_a_page_of_the_queue_costs_the_same_after_months_of_orders(tmp_path, status):
    cost = {}
    for history in (20, 5_000):
        path = tmp_path / f"order-{history}.db"
        store = await SqliteOrderStore.open(path)
        await store.close()
        fill(path, "s1", history, [(history + n, status) for n in range(3)])
        cost[history] = (steps_of_listing(path, status), steps_of_listing(path, status, {"brand-of-s1"}))
    # Reading 5,000 orders of history is ~100 thousand steps a page; the queue's three a handful.
    assert cost[5_000][0] <= cost[20][0] + 5 and cost[5_000][1] <= cost[20][1] + 5, cost


async def test_the_previous_release_still_opens_a_store_this_one_has_opened(opened):
    # The queue's index is made on open, not by a migration: the previous release (six
    # migrations) refuses a store whose schema version it does not know.
    path, store = opened
    await store.close()
    previous = await Database.open(path, order_store.MIGRATIONS[:6], synchronous=order_store.SYNCHRONOUS)
    await previous.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'orders_store_queue'").fetchone() is not None
