"""Refused placements (ABORTED rows: each keeps its request_id answered) no longer weigh on the
user's ListOrders, and are forgotten once their request id would be: before, every one was kept
for good and read past by each ListOrders of its user (200,000 of them, 11 hours of a script at
the gateway's pace, cost ~100 ms of a reader thread per call)."""
from __future__ import annotations

import sqlite3
from dataclasses import replace

from services.common.errors import DomainError
from services.order import model
from services.order import store as order_store
from services.order.store import SqliteOrderStore, to_doc

from tests.unit.order.sqlite_steps import steps
from tests.unit.order.test_order_saga import place
from tests.unit.order.test_order_store_version import draft, pay


def fill(path, refused: int, listed: int) -> None:
    """`refused` ABORTED rows of user u1, then `listed` PAID ones, newest last."""
    rows = []
    for n in range(refused + listed):
        o = pay(replace(draft(f"ord_u1_{n:06d}", user="u1"), create_ms=n, update_ms=n))
        o = replace(o, request_id=f"r{n}", status=model.ABORTED if n < refused else model.PAID)
        rows.append((o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version, o.store_id))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, expire_ms, pending, doc, version, store_id)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
            rows,
        )


def steps_of_listing(path) -> int:
    """SQLite virtual-machine steps (in thousands) of the first page of u1's orders."""
    # A page that reaches past the listed orders: the refused ones are all that is left.
    found, count = steps(path, order_store._list_for_user, "u1", 21, None)
    assert [o.status for o in found] == [model.PAID] * 3
    return count


async def test_a_users_listing_costs_the_same_after_thousands_of_refused_placements(tmp_path):
    cost = {}
    for refused in (20, 5_000):
        path = tmp_path / f"order-{refused}.db"
        store = await SqliteOrderStore.open(path)
        await store.close()
        fill(path, refused, 3)
        cost[refused] = steps_of_listing(path)
    assert cost[5_000] <= cost[20] + 5, cost


async def test_refused_placements_are_forgotten_with_their_request_ids_and_a_late_retry_is_new(world):
    async def refused(request_id):
        try:
            await world.service.place_order(place(request_id, card_use=model.CARD_REQUIRED))
        except DomainError as exc:
            assert exc.reason == "NO_CARD_AVAILABLE"
        else:
            raise AssertionError("placed without a card")

    await refused("old")
    world.clock.advance(model.REQUEST_MEMORY_MS / 1000 - 60)
    await refused("recent")
    world.clock.advance(120)
    await world.service.sweep()
    assert await world.store.get(model.order_id_for("u1", "old")) is None
    assert (await world.store.get(model.order_id_for("u1", "recent"))).status == model.ABORTED
    # A week on, its request id is a new request: with a card now, it is placed.
    world.card.grant("c1", "u1")
    again = await world.service.place_order(place("old", card_use=model.CARD_REQUIRED))
    assert again.status == model.PAID and again.card_id == "c1"
