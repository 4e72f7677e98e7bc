"""store._join_by_invite (AcceptInvite with claim_signup) on an in-memory SQLite connection, run
the way the writer runs it (its own savepoint in a group-commit transaction): the claim and the
invite commit together, and a failing invite keeps nothing of the claim."""
import sqlite3

import pytest

from services.card import model as m
from services.card import store as s
from services.common.clock import FakeClock, now_ms
from services.common.db import _run_batch
from services.common.errors import DomainError

C = "spring"
POLICY, WINDOW = m.AttemptPolicy(), m.DEFAULT_NEW_USER_WINDOW_MS


@pytest.fixture
def conn():
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.executescript(s.MIGRATIONS[0])
    yield db
    db.close()


@pytest.fixture
def world(conn):
    clock = FakeClock()
    start = now_ms(clock) - 1000
    c = m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9), start, b"k" * 32)
    now = now_ms(clock)
    write(conn, s._create_campaign, c, "")
    write(conn, s._claim_signup, c, "alice", "", now)
    code = write(conn, s._ensure_code_fn, c, "alice")
    return c, now, code


def write(conn, fn, *args):
    """One db.write: fn's result, or its exception (a returned DomainError is committed)."""
    ((ok, result),) = _run_batch(conn, [(fn, args, None)])
    if not ok:
        raise result
    return result


def dump(conn):
    tables = ["campaigns", "members", "cards", "ledger", "invites", "invite_attempts", "requests"]
    return {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}").fetchall())) for t in tables}


def join(conn, c, now, user, candidates, rid="r1"):
    return write(conn, s._join_by_invite, c, user, candidates, f"i-{rid}", f"j-{rid}", now, POLICY, WINDOW)


def test_the_claim_and_the_invite_commit_together_with_both_request_records(conn, world):
    c, now, code = world
    joined = join(conn, c, now, "bob", [code])
    assert joined.newly_granted and joined.accepted.newly_accepted
    assert [k.source for k in joined.signup_cards] == [m.CardSource.SIGNUP]
    assert joined.accepted.invite.invitee_reason == m.SIGNUP_CARD_COUNTED
    methods = {r[0] for r in conn.execute("SELECT method FROM requests WHERE request_id IN ('i-r1', 'j-r1')")}
    assert methods == {"AcceptInvite", "ClaimSignupCard"}
    assert conn.execute("SELECT COUNT(*) FROM cards").fetchone()[0] == 3  # alice 1 + 1, bob 1


def test_a_returned_invite_error_keeps_the_attempt_and_nothing_of_the_claim(conn, world):
    c, now, _ = world
    before = dump(conn)
    returned = join(conn, c, now, "bob", ["ZZZZZZZZZ"])
    assert isinstance(returned, DomainError) and returned.reason == m.INVITE_CODE_NOT_FOUND
    after = dump(conn)
    assert after["invite_attempts"] == [(C, "bob", now, 1)]
    assert [r[:2] for r in after["requests"]] == [r[:2] for r in before["requests"]] + [("AcceptInvite", "i-r1")]
    assert {t: v for t, v in after.items() if t not in ("invite_attempts", "requests")} == {
        t: v for t, v in before.items() if t not in ("invite_attempts", "requests")
    }


def test_a_raised_invite_error_leaves_everything_as_it_was(conn, world):
    c, now, code = world
    before = dump(conn)
    with pytest.raises(DomainError) as err:
        join(conn, c, now, "alice", [code])
    assert err.value.reason == m.SELF_INVITE
    assert dump(conn) == before


def test_a_failing_claim_fails_the_call_before_the_invite(conn, world):
    c, now, code = world
    before = dump(conn)
    with pytest.raises(DomainError) as err:
        join(conn, c, c.end_ms + 1, "bob", [code])
    assert err.value.reason == m.CAMPAIGN_NOT_ACTIVE
    assert dump(conn) == before
