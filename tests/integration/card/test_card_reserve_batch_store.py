"""CardHandlers.reserve_batch over the real SqliteCardStore (SQLite on tmp_path, no server): the
batch answers every entry exactly as `reserve` called entry after entry does, leaves the same
rows behind, and costs the loop thread no asyncio Task per entry."""
import asyncio
import shutil
import sqlite3

from services.card import model as m
from services.card.handlers import CardHandlers, ReserveEntry
from services.card.store import Hold, SqliteCardStore
from services.common.clock import FakeClock, now_ms
from services.common.errors import DomainError

C = "spring"


def entry(user, order, *, amount=1500, card_id="", redeem=False, campaign=C, request_id=None):
    rid = request_id if request_id is not None else f"{order}:reserve"
    return ReserveEntry(rid, campaign, user, order, amount, card_id, 0, redeem)


async def twin_stores(tmp_path, clock):
    """Two stores holding the same campaign and the same cards (one file, copied), so card ids
    agree; returns them with alice's card id."""
    a = await SqliteCardStore.open(tmp_path / "a.db", clock=clock)
    h = CardHandlers(a, clock)
    start = now_ms(clock) - 1000
    await h.create_campaign("", C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9, signup_grant=1))
    cards = {u: (await h.claim_signup("", C, u))[0] for u in ("alice", "bob", "carol")}
    await a.close()
    shutil.copy(tmp_path / "a.db", tmp_path / "b.db")
    a = await SqliteCardStore.open(tmp_path / "a.db", clock=clock)
    b = await SqliteCardStore.open(tmp_path / "b.db", clock=clock)
    return a, b, cards["alice"][0].card_id


def batch(alice_card):
    return [
        entry("alice", "a1", redeem=True),  # ok: redeemed
        entry("alice", "a2"),  # alice's only card went to a1: NO_CARD_AVAILABLE
        entry("bob", "b1", amount=0),  # bad input
        entry("bob spaces", "b2"),  # bad id
        entry("bob", "b3", campaign="nope"),  # unknown campaign
        entry("bob", "b4", campaign="bad id!"),  # malformed campaign id
        entry("bob", "b5", amount=3000, redeem=True),  # above the face value: REDEEM_NOT_COVERED
        entry("carol", "c1"),  # ok: held
        entry("carol", "c1"),  # the same request again: the same reservation
        entry("bob", "b6", card_id=alice_card),  # not bob's card
        entry("carol", "a1", request_id="carol-a1"),  # alice's order id
        entry("dave", "d1"),  # never signed up: NO_CARD_AVAILABLE
        entry("bob", "b7", campaign="nope"),  # the unknown campaign again
        entry("bob", "b8"),  # ok: held
    ]


def comparable(outcome):
    if isinstance(outcome, Hold):
        return outcome
    if isinstance(outcome, DomainError):
        return type(outcome), outcome.code, outcome.reason, outcome.message, outcome.violations
    return type(outcome), str(outcome)


def rows(path):
    conn = sqlite3.connect(str(path))
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("cards", "reservations", "ledger", "requests")
        }
    finally:
        conn.close()


async def test_a_mixed_batch_answers_and_writes_exactly_as_reserve_entry_by_entry(tmp_path):
    clock = FakeClock()
    a, b, alice_card = await twin_stores(tmp_path, clock)
    entries = batch(alice_card)
    try:
        batched = await CardHandlers(a, clock).reserve_batch("batch-1", entries)
        one_by_one = []
        h = CardHandlers(b, clock)
        for e in entries:
            try:
                one_by_one.append(
                    await h.reserve(e.request_id, e.campaign_id, e.user_id, e.order_id, e.amount_fen, e.card_id,
                                    e.ttl_seconds, e.redeem)
                )
            except Exception as exc:
                one_by_one.append(exc)
    finally:
        await a.close()
        await b.close()
    assert [comparable(o) for o in batched] == [comparable(o) for o in one_by_one]
    # What those outcomes are (so the comparison is not between two identical failures).
    reasons = [o.reason if isinstance(o, DomainError) else o.reservation.state for o in batched]
    assert reasons == [
        m.ReservationState.CONFIRMED, m.NO_CARD_AVAILABLE, "INVALID_ARGUMENT", "INVALID_ARGUMENT",
        m.CAMPAIGN_NOT_FOUND, "INVALID_ARGUMENT", m.REDEEM_NOT_COVERED, m.ReservationState.HELD,
        m.ReservationState.HELD, m.CARD_NOT_OWNED, m.ORDER_ID_CONFLICT, m.NO_CARD_AVAILABLE,
        m.CAMPAIGN_NOT_FOUND, m.ReservationState.HELD,
    ]
    assert batched[8] == batched[7]
    assert rows(tmp_path / "a.db") == rows(tmp_path / "b.db")


async def test_a_batch_creates_no_task_per_entry(tmp_path):
    clock = FakeClock()
    a, b, _ = await twin_stores(tmp_path, clock)
    await b.close()
    loop = asyncio.get_running_loop()
    created = []

    def counting_factory(loop, coro, **kw):
        # Every Task the loop makes goes through here: create_task, ensure_future, gather(coro).
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **kw)

    previous = loop.get_task_factory()
    loop.set_task_factory(counting_factory)
    try:
        out = await CardHandlers(a, clock).reserve_batch(
            "b1", [entry(u, f"{u}-o{i}") for i in range(4) for u in ("alice", "bob", "carol")]
        )
    finally:
        loop.set_task_factory(previous)
        await a.close()
    assert [isinstance(o, Hold) for o in out] == [True] * 3 + [False] * 9  # one card each
    assert created == []
