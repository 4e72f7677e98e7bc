"""Reserve(redeem) of a free card is one UPDATE AVAILABLE -> REDEEMED (migration 2): the card, the
reservation and the ledger must end exactly as after a hold followed by a confirm, and every other
move must still write its one ledger row. Store transaction functions on SQLite, no server."""
import sqlite3

import pytest

from services.card import model as m
from services.card import store as s
from services.common.clock import FakeClock, now_ms
from services.common.db import Database
from services.common.errors import FailedPrecondition

C = "spring"
LEDGER = "SELECT from_state, to_state, order_id, time_ms, cause FROM ledger WHERE card_id = ? ORDER BY seq"


def campaign(clock, **rules):
    start = now_ms(clock) - 1000
    rules.setdefault("signup_grant", 3)
    return m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9, **rules), start, b"k" * 32)


@pytest.fixture
def conn():
    db = sqlite3.connect(":memory:", isolation_level=None)
    for script in s.MIGRATIONS:
        db.executescript(script)
    yield db
    db.close()


def ledger(conn, card_id):
    return conn.execute(LEDGER, (card_id,)).fetchall()


def attempt(conn, fn, *args):
    """fn inside a savepoint, as the store's writer runs it: a raise undoes fn's changes."""
    conn.execute("SAVEPOINT t")
    try:
        out = fn(conn, *args)
    except Exception:
        conn.execute("ROLLBACK TO t")
        raise
    finally:
        conn.execute("RELEASE t")
    return out


def signed_up(conn, clock, user="alice", **rules):
    c = campaign(clock, **rules)
    s._create_campaign(conn, c, "")
    cards, _ = s._claim_signup(conn, c, user, "", now_ms(clock))
    return c, sorted(cards, key=lambda k: (k.expire_ms, k.card_id))


@pytest.mark.parametrize("by_card_id", [False, True])
def test_a_redeem_leaves_card_reservation_and_ledger_as_a_hold_then_confirm_would(conn, by_card_id):
    clock = FakeClock()
    now = now_ms(clock)
    c, (first, second, _) = signed_up(conn, clock)
    # The two-step way: a plain hold of the first card, then ConfirmReservation.
    held = s._reserve(conn, c, "alice", "o1", 1800, first.card_id if by_card_id else "", 900, "r1", now)
    assert held.card.card_id == first.card_id and held.card.state == m.CardState.RESERVED
    two_step = s._confirm(conn, "o1", "c1", now)
    # The one-step way: Reserve(redeem) of the second card.
    one_step = s._reserve(conn, c, "alice", "o2", 1800, second.card_id if by_card_id else "", 900, "r2", now, True)
    assert one_step.card.card_id == second.card_id
    for hold, order in ((two_step, "o1"), (one_step, "o2")):
        assert hold.card.state == m.CardState.REDEEMED and hold.card.order_id == order
        assert hold.card.reserved_until_ms is None
        assert hold.reservation.state == m.ReservationState.CONFIRMED
        assert hold.reservation.covered_fen == 1800 and hold.reservation.expire_ms == now + 900_000
        assert s._card(conn, hold.card.card_id) == hold.card
        assert s._reservation(conn, order) == hold.reservation
    grant = (0, 1, "", now, "GRANT_SIGNUP")
    assert ledger(conn, first.card_id) == [grant, (1, 2, "o1", now, "RESERVE"), (2, 3, "o1", now, "CONFIRM")]
    assert ledger(conn, second.card_id) == [grant, (1, 2, "o2", now, "RESERVE"), (2, 3, "o2", now, "CONFIRM")]


def test_the_two_ledger_rows_of_a_redeem_are_consecutive_and_in_order(conn):
    clock = FakeClock()
    c, cards = signed_up(conn, clock)
    for n in range(3):
        s._reserve(conn, c, "alice", f"o{n}", 100, "", 900, f"r{n}", now_ms(clock), True)
    rows = conn.execute("SELECT seq, card_id, cause FROM ledger WHERE cause IN ('RESERVE', 'CONFIRM') ORDER BY seq").fetchall()
    assert [r[2] for r in rows] == ["RESERVE", "CONFIRM"] * 3
    for reserve, confirm in zip(rows[::2], rows[1::2]):
        assert confirm[0] == reserve[0] + 1 and confirm[1] == reserve[1]


def test_a_redeem_not_covered_by_the_chosen_card_moves_nothing(conn):
    clock = FakeClock()
    now = now_ms(clock)
    c, (card, *_) = signed_up(conn, clock, card_face_value_fen=1000)
    before = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    for card_id in (card.card_id, ""):
        with pytest.raises(FailedPrecondition) as err:
            attempt(conn, s._reserve, c, "alice", f"o-{card_id}", 1001, card_id, 900, "", now, True)
        assert err.value.reason == m.REDEEM_NOT_COVERED
    assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == before
    assert conn.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    assert {k.state for k in s._user_cards(conn, C, "alice")} == {m.CardState.AVAILABLE}


def test_a_redeem_retried_or_after_a_live_hold_writes_no_second_history(conn):
    clock = FakeClock()
    now = now_ms(clock)
    c, (first, second, _) = signed_up(conn, clock)
    one = s._reserve(conn, c, "alice", "o1", 500, "", 900, "r1", now, True)
    assert s._reserve(conn, c, "alice", "o1", 500, "", 900, "r1", now, True) == one  # a retry
    s._reserve(conn, c, "alice", "o2", 500, "", 900, "r2", now)  # a plain hold, then redeem it
    redeemed = s._reserve(conn, c, "alice", "o2", 500, "", 900, "r2", now, True)
    assert redeemed.card.card_id == second.card_id and redeemed.card.state == m.CardState.REDEEMED
    assert [r[4] for r in ledger(conn, first.card_id)] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]
    assert [r[4] for r in ledger(conn, second.card_id)] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]


def test_every_other_move_still_writes_exactly_its_one_ledger_row(conn):
    clock = FakeClock()
    c, (a, b, d) = signed_up(conn, clock)
    now = now_ms(clock)
    s._reserve(conn, c, "alice", "o1", 500, a.card_id, 60, "", now)
    s._release(conn, "o1", "", now)  # RESERVED -> AVAILABLE
    s._reserve(conn, c, "alice", "o2", 500, a.card_id, 60, "", now, True)
    s._refund(conn, "o2", "", now)  # REDEEMED -> AVAILABLE
    s._reserve(conn, c, "alice", "o3", 500, b.card_id, 60, "", now)
    later = now + 61_000
    s._reserve(conn, c, "alice", "o4", 500, b.card_id, 60, "", later)  # the lapsed hold of o3 ends first
    assert [(r[0], r[1], r[4]) for r in ledger(conn, a.card_id)] == [
        (0, 1, "GRANT_SIGNUP"), (1, 2, "RESERVE"), (2, 1, "RELEASE"), (1, 2, "RESERVE"), (2, 3, "CONFIRM"),
        (3, 1, "REFUND"),
    ]
    assert [(r[0], r[1], r[2], r[4]) for r in ledger(conn, b.card_id)] == [
        (0, 1, "", "GRANT_SIGNUP"), (1, 2, "o3", "RESERVE"), (2, 1, "o3", "RESERVATION_TIMEOUT"), (1, 2, "o4", "RESERVE"),
    ]
    conn.execute("UPDATE cards SET state = 4, cause = 'EXPIRE', changed_ms = ? WHERE card_id = ?", (later, d.card_id))
    assert [r[4] for r in ledger(conn, d.card_id)] == ["GRANT_SIGNUP", "EXPIRE"]


async def test_a_database_made_by_the_first_schema_upgrades_and_redeems_with_the_same_history(tmp_path):
    clock = FakeClock()
    path = tmp_path / "card.db"
    old = await Database.open(path, s.MIGRATIONS[:1], clock=clock)
    c = campaign(clock)
    await old.write(s._create_campaign, c, "")
    await old.write(s._claim_signup, c, "alice", "", now_ms(clock))
    await old.close()
    store = await s.SqliteCardStore.open(path, clock=clock)
    try:
        assert await store.db.read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]) == len(s.MIGRATIONS)
        hold = await store.reserve(c, "alice", "o1", 900, "", 900, "r1", now_ms(clock), redeem=True)
        _, rows = await store.card_history(hold.card.card_id)
        assert [(r.from_state, r.to_state, r.order_id, r.cause) for r in rows] == [
            (0, 1, "", "GRANT_SIGNUP"), (1, 2, "o1", "RESERVE"), (2, 3, "o1", "CONFIRM"),
        ]
    finally:
        await store.close()
