"""Request ids of the calls that change an existing order (migration 6): remembered in the write
that applies the call, told apart as replay or reuse within their scope, forgotten by the sweep
after a week, and a store from before the table opens as it was."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from services.common.db import Database
from services.common.errors import DomainError, FailedPrecondition
from services.order import model
from services.order.handlers import PlaceOrderInput
from services.order.model import Order, Selection
from services.order.store import MIGRATIONS, SYNCHRONOUS, SqliteOrderStore, to_doc

from tests.unit.order.test_order_store_version import draft, pay


def visible(cur: Order) -> None:
    if not cur.visible:
        raise AssertionError("guard refused")


def accept(at: int):
    def advance(cur: Order) -> Order:
        if cur.status == model.ACCEPTED:
            return cur
        model.check_advance(cur, model.ACCEPTED)
        return model.with_status(cur, model.ACCEPTED, at, model.ACTOR_MERCHANT)

    return advance


def key(rid: str, order_id: str, *, note: str = "", user: str = "", at: int = 10) -> model.RequestKey:
    k = model.request_key(model.UPDATE_ORDER_STATUS, rid, user, at, order_id, model.ACCEPTED, note)
    assert k is not None
    return k


async def reason(coro) -> str:
    with pytest.raises(DomainError) as err:
        await coro
    return err.value.reason


def test_a_request_key_needs_a_request_id_and_tells_content_apart():
    assert model.request_key(model.CANCEL_ORDER, "", "u1", 1, "ord_1", "") is None
    one = model.request_key(model.CANCEL_ORDER, "c1", "u1", 1, "ord_1", "r")
    assert one is not None and (one.method, one.request_id, one.user_id, one.at_ms) == (model.CANCEL_ORDER, "c1", "u1", 1)
    assert one.fingerprint == model.request_key(model.CANCEL_ORDER, "c1", "u1", 9, "ord_1", "r").fingerprint
    assert one.fingerprint != model.request_key(model.CANCEL_ORDER, "c1", "u1", 1, "ord_2", "r").fingerprint
    assert one.fingerprint != model.request_key(model.CANCEL_ORDER, "c1", "u1", 1, "ord_1", "r2").fingerprint
    assert one.fingerprint != model.request_key(model.CONFIRM_PAYMENT, "c1", "u1", 1, "ord_1", "r").fingerprint
    order = draft()
    assert one.scope(order) == "user:u1"
    assert model.request_key(model.CANCEL_ORDER, "c1", "", 1, "ord_1", "r").scope(order) == "store:s1"


async def test_a_store_from_before_request_ids_opens_and_remembers_them(tmp_path):
    path = tmp_path / "order.db"
    old = await Database.open(path, MIGRATIONS[:5], synchronous=SYNCHRONOUS)
    try:
        o = pay(draft("ord_a"))

        def insert_as_before(conn) -> None:
            conn.execute(
                "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, doc, version, store_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (o.order_id, o.user_id, o.request_id, o.status, o.create_ms, o.update_ms, to_doc(o), o.version, o.store_id),
            )

        await old.write(insert_as_before)
    finally:
        await old.close()

    store = await SqliteOrderStore.open(path)
    try:
        assert (await store.get("ord_a")) == o
        done, replayed = await store.apply_request("ord_a", key("u1", "ord_a"), visible, accept(3))
        assert (done.status, replayed) == (model.ACCEPTED, False)
        again, replayed = await store.apply_request("ord_a", key("u1", "ord_a", at=99), visible, accept(4))
        assert (again, replayed) == (done, True)
        assert await reason(store.apply_request("ord_a", key("u1", "ord_a", note="x"), visible, accept(5))) == "REQUEST_ID_REUSED"
        assert await store.request_fingerprint(key("u1", "ord_a"), done) == key("u1", "ord_a").fingerprint
        assert await store.request_fingerprint(key("u2", "ord_a"), done) is None
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT method, scope, request_id, order_id, status, create_ms FROM requests").fetchall() == [
            (model.UPDATE_ORDER_STATUS, "store:s1", "u1", "ord_a", model.ACCEPTED, 10)
        ]


async def test_a_call_that_fails_or_is_not_answered_leaves_its_request_id_unused(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        new, _ = await store.begin_placement(draft("ord_a"))
        await store.update("ord_a", pay, expect=new)

        def refuse(cur: Order) -> Order:
            raise FailedPrecondition("ILLEGAL_TRANSITION", "no")

        assert await reason(store.apply_request("ord_a", key("u1", "ord_a"), visible, refuse)) == "ILLEGAL_TRANSITION"
        unchanged, replayed = await store.apply_request(
            "ord_a", key("u1", "ord_a"), visible, lambda cur: cur, answered=lambda o: False
        )
        assert not replayed and unchanged.status == model.PAID
        assert await store.request_fingerprint(key("u1", "ord_a"), unchanged) is None
        done, replayed = await store.apply_request("ord_a", key("u1", "ord_a"), visible, accept(3))
        assert (done.status, replayed) == (model.ACCEPTED, False)
    finally:
        await store.close()


async def test_twenty_concurrent_calls_under_one_key_apply_one(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        for oid in ("ord_a", "ord_b"):
            new, _ = await store.begin_placement(draft(oid, user=f"u-{oid}"))
            await store.update(oid, pay, expect=new)
        keys = [key("u1", "ord_a"), key("u1", "ord_b"), key("u1", "ord_a", note="n")]
        targets = ["ord_a", "ord_b", "ord_a"]
        results = await asyncio.gather(
            *(store.apply_request(targets[i % 3], keys[i % 3], visible, accept(3)) for i in range(20)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, DomainError) and e.reason == "REQUEST_ID_REUSED" for e in errors), errors
        answers = [r for r in results if not isinstance(r, BaseException)]
        assert sum(not replayed for _, replayed in answers) == 1
        assert len({o.order_id for o, _ in answers}) == 1
        statuses = sorted([(await store.get(oid)).status for oid in ("ord_a", "ord_b")])
        assert statuses == sorted([model.ACCEPTED, model.PAID])
    finally:
        await store.close()


async def test_the_sweep_forgets_request_ids_after_a_week(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(
        PlaceOrderInput(request_id="r1", user_id="u1", store_id="s1", lines=(Selection("latte", 1),))
    )
    await world.service.update_status(order.order_id, model.ACCEPTED, "", "u1")
    await world.service.update_status(order.order_id, model.PREPARING, "", "u2")
    world.clock.advance(model.REQUEST_MEMORY_MS / 1000 - 60)
    await world.service.sweep()
    # Still within the week: the replay is answered.
    assert (await world.service.update_status(order.order_id, model.ACCEPTED, "", "u1")).status == model.PREPARING
    world.clock.advance(120)
    await world.service.sweep()
    # Forgotten: the same call is judged as a new one.
    err = await reason(world.service.update_status(order.order_id, model.ACCEPTED, "", "u1"))
    assert err == "ILLEGAL_TRANSITION"


async def test_a_busy_week_of_request_ids_is_forgotten_in_one_pass_not_500_a_pass(world):
    world.card.grant("c1", "u1")
    order = await world.service.place_order(
        PlaceOrderInput(request_id="r1", user_id="u1", store_id="s1", lines=(Selection("latte", 1),))
    )
    # 1,200 remembered request ids (a merchant's replays would answer each of them).
    await asyncio.gather(*(world.service.update_status(order.order_id, model.ACCEPTED, "", f"k{n}") for n in range(1_200)))
    count = "SELECT COUNT(*) FROM requests"
    assert (await world.store.db.read(lambda c: c.execute(count).fetchone()[0])) >= 1_200
    world.clock.advance(model.REQUEST_MEMORY_MS / 1000 + 60)
    await world.service.sweep(limit=500)
    assert await world.store.db.read(lambda c: c.execute(count).fetchone()[0]) == 0
