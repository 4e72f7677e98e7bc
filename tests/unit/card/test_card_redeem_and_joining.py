"""Reserve(redeem) and the joining grant, through the model, the handlers (fake store) and the
store's transaction functions on an in-memory SQLite connection (no server, milliseconds)."""
import sqlite3

import pytest

from services.card import model as m
from services.card import store as s
from services.card.handlers import CardHandlers
from services.common.clock import FakeClock, now_ms
from services.common.errors import FailedPrecondition

C = "spring"


@pytest.mark.parametrize("signup,invitee,joining", [(1, 1, 1), (1, 3, 3), (2, 1, 2)])
def test_a_joiner_gets_the_larger_of_the_sign_up_and_invitee_grants(signup, invitee, joining):
    assert m.joining_grant(m.Rules(signup_grant=signup, invitee_grant=invitee)) == joining


def campaign(clock, **rules):
    start = now_ms(clock) - 1000
    return m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9, **rules), start, b"k" * 32)


class NoStore:
    """A store that must not be reached."""

    def __init__(self, c):
        self.c = c

    async def get_campaign(self, campaign_id):
        return self.c

    async def reserve(self, *args, **kwargs):
        raise AssertionError("the store was touched")


async def test_redeem_above_the_face_value_is_refused_before_the_store_is_touched():
    clock = FakeClock()
    handlers = CardHandlers(NoStore(campaign(clock)), clock)
    with pytest.raises(FailedPrecondition) as err:
        await handlers.reserve("", C, "alice", "o1", 2501, "", 0, redeem=True)
    assert err.value.reason == m.REDEEM_NOT_COVERED


@pytest.fixture
def conn():
    db = sqlite3.connect(":memory:", isolation_level=None)
    for script in s.MIGRATIONS:  # the schema the store runs on: every migration, not the first only
        db.executescript(script)
    yield db
    db.close()


def causes(conn, card_id):
    return [r[0] for r in conn.execute("SELECT cause FROM ledger WHERE card_id = ? ORDER BY seq", (card_id,))]


def test_a_redeem_is_one_transaction_function_writing_reserve_then_confirm(conn):
    clock = FakeClock()
    c = campaign(clock)
    now = now_ms(clock)
    s._create_campaign(conn, c, "")
    (card,), _ = s._claim_signup(conn, c, "alice", "", now)
    hold = s._reserve(conn, c, "alice", "o1", 1800, "", 900, "", now, True)
    assert hold.reservation.state == m.ReservationState.CONFIRMED and hold.card.state == m.CardState.REDEEMED
    assert causes(conn, card.card_id) == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]
    replay = s._reserve(conn, c, "alice", "o1", 1800, "", 900, "", now, True)
    assert replay.reservation == hold.reservation
    assert causes(conn, card.card_id) == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]


def test_the_sign_up_grants_nothing_to_a_user_who_joined_through_an_invite(conn):
    clock = FakeClock()
    c = campaign(clock)
    now = now_ms(clock)
    s._create_campaign(conn, c, "")
    s._claim_signup(conn, c, "alice", "", now)
    code = s._ensure_code_fn(conn, c, "alice")
    accepted = s._accept_invite(conn, c, "bob", [code], "", now, m.AttemptPolicy(), m.DEFAULT_NEW_USER_WINDOW_MS)
    assert [k.source for k in accepted.invitee_cards] == [m.CardSource.INVITEE]
    cards, newly = s._claim_signup(conn, c, "bob", "", now)
    assert not newly and [k.card_id for k in cards] == [accepted.invitee_cards[0].card_id]
    assert conn.execute("SELECT cards_granted FROM members WHERE user_id = 'bob'").fetchone()[0] == 1
