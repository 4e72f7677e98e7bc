"""AcceptInvite looks its candidate codes up by the members_code index whatever their number: a
text with two or more codes (a pasted chat log) was read through the primary key instead, every
member of the campaign, in the single writer, so its cost grew with the campaign."""
import sqlite3

import pytest

from services.card import invite_code as codes
from services.card import model as m
from services.card import store as s
from services.common.clock import FakeClock, now_ms

C = "spring"


def fresh_store() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for script in s.MIGRATIONS:
        db.executescript(script)
    return db


def setup(conn, members: int):
    clock = FakeClock()
    start = now_ms(clock) - 1000
    c = m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9), start, b"k" * 32)
    s._create_campaign(conn, c, "")
    s._claim_signup(conn, c, "alice", "", now_ms(clock))
    code = s._ensure_code_fn(conn, c, "alice")
    conn.executemany(
        "INSERT INTO members (campaign_id, user_id, cards_granted, invite_code) VALUES (?, ?, 1, ?)",
        ((C, f"member-{i:06d}", f"Z{i:09d}") for i in range(members)),
    )
    return c, code, now_ms(clock)


def steps_of_accept(conn, members: int, candidates_of) -> int:
    """SQLite virtual-machine steps (in thousands) of one AcceptInvite of `candidates_of(code)`."""
    c, code, now = setup(conn, members)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1000)
    try:
        result = s._accept_invite(
            conn, c, "bob", candidates_of(code), "", now, m.AttemptPolicy(), m.DEFAULT_NEW_USER_WINDOW_MS
        )
    finally:
        conn.set_progress_handler(None, 0)
    assert isinstance(result, s.AcceptResult) and result.invite.inviter_user_id == "alice"
    return steps


def a_wrong_code_beside(code: str) -> list[str]:
    return [codes.code_for(b"another secret", "nobody"), code]


@pytest.mark.parametrize("candidates_of", [lambda code: [code], a_wrong_code_beside], ids=["one code", "two codes"])
def test_accepting_an_invite_costs_the_same_in_a_small_and_a_large_campaign(candidates_of):
    small, large = fresh_store(), fresh_store()
    try:
        few = steps_of_accept(small, 10, candidates_of)
        many = steps_of_accept(large, 20_000, candidates_of)
    finally:
        small.close()
        large.close()
    # A scan of 20,000 members is ~300 thousand steps; a lookup by the index a handful.
    assert many <= few + 5, (few, many)
