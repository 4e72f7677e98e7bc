"""What one merchant call reads of a store is bounded, however long the store's history.

Merchants call with their own credential now, from outside the platform. Two reads grew with a
store's whole history: the check that a brand grant covers a store (a rival's store, with no
order of the grant's brands, was read order by order to its first one: 94 ms at 60,000
orders, its latency telling the rival's volume), and a page of a status outside the queue
(CANCELLED, PENDING_PAYMENT: 31 ms at 60,000). Either, called in a loop, held the service's
two reader threads for everyone (users' ListOrders, the sweep)."""
from __future__ import annotations

import sqlite3

from services.order import model
from services.order import store as order_store
from services.order.store import SqliteOrderStore

from tests.unit.order.sqlite_steps import steps
from tests.unit.order.test_order_store_queue import fill

WINDOW = order_store.STORE_READ_WINDOW


async def store_with(tmp_path, history: int, queue=()) -> object:
    path = tmp_path / f"order-{history}.db"
    store = await SqliteOrderStore.open(path)
    await store.close()
    fill(path, "s1", history, list(queue))
    return path


async def test_a_rival_brand_costs_the_same_on_a_small_and_a_busy_store(tmp_path):
    cost = {}
    for history in (20, 20 * WINDOW):
        path = await store_with(tmp_path, history)
        covered, cost[history] = steps(path, order_store._store_has_brand, "s1", {"rival"})
        assert covered is False
    # ~6 steps of 1,000 per 1,000 orders read: the whole history was 120, two windows are 12.
    assert cost[20 * WINDOW] <= cost[20] + 20, cost


async def test_a_brand_grant_still_covers_a_store_by_its_recent_orders_and_its_queue(tmp_path):
    # fill() writes the history as COMPLETED orders of brand-of-s1 (from ord_s1_000000 on).
    path = await store_with(tmp_path, 3 * WINDOW, [(-1, model.PAID)])
    with sqlite3.connect(path) as db:
        # The store moved to another brand: its newest orders are the new brand's, the old
        # brand's history is far behind them, and an older order still waits in the queue.
        db.execute("UPDATE orders SET doc = json_set(doc, '$.b', 'new-brand') WHERE store_id = 's1' AND status = 'COMPLETED'"
                   " AND create_ms >= ?", (WINDOW,))
        db.execute("UPDATE orders SET doc = json_set(doc, '$.b', 'old-brand') WHERE store_id = 's1' AND status = 'COMPLETED'"
                   " AND create_ms < ?", (WINDOW,))
        db.execute("UPDATE orders SET doc = json_set(doc, '$.b', 'queued-brand') WHERE store_id = 's1' AND status = 'PAID'")
    with sqlite3.connect(path) as db:
        assert order_store._store_has_brand(db, "s1", {"new-brand"}) is True
        assert order_store._store_has_brand(db, "s1", {"queued-brand"}) is True  # its orders to act on
        assert order_store._store_has_brand(db, "s1", {"rival"}) is False
        # Beyond the window and out of the queue: the old brand no longer lists the store.
        assert order_store._store_has_brand(db, "s1", {"old-brand"}) is False
        assert order_store._store_has_brand(db, "no-orders", {"rival"}) is None


async def test_a_page_outside_the_queue_reads_a_window_and_says_where_to_go_on(tmp_path):
    history = 10 * WINDOW
    path = await store_with(tmp_path, history, [(-1, model.CANCELLED)])  # the oldest order of all
    cancelled = (model.CANCELLED,)
    (orders, stop), cost = steps(path, order_store._store_page, "s1", cancelled, 21, None, None, WINDOW)
    assert orders == [] and stop is not None
    # The cost of a window, not of the history.
    small = await store_with(tmp_path, 20, [(21, model.CANCELLED)])
    _, small_cost = steps(small, order_store._store_page, "s1", cancelled, 21, None, None, WINDOW)
    assert cost <= small_cost + 20, (cost, small_cost)
    # Paging on from where each window stopped reaches the cancelled order at the far end.
    pages, found = 0, []
    with sqlite3.connect(path) as db:
        while True:
            pages += 1
            orders, stop = order_store._store_page(db, "s1", cancelled, 21, stop, None, WINDOW)
            found += orders
            if stop is None:
                break
    assert [o.order_id for o in found] == ["ord_s1_-00001"] and pages <= 11


async def test_a_page_of_the_queue_or_one_that_fills_stops_at_its_orders(tmp_path):
    path = await store_with(tmp_path, 3 * WINDOW, [(3 * WINDOW + n, model.PAID) for n in range(3)])
    with sqlite3.connect(path) as db:
        orders, stop = order_store._store_page(db, "s1", (model.PAID,), 21, None, None, WINDOW)
        assert len(orders) == 3 and stop is None
        orders, stop = order_store._store_page(db, "s1", model.LIVE_STATUSES, 21, None, None, WINDOW)
        assert len(orders) == 21 and stop is None  # a full page: the caller's token is its last order
