"""Mutation testing of the audit: a clean campaign made through the real services' APIs, then
exactly one invariant broken by writing straight into a service's SQLite store while the suite
is stopped, the way a real bug or a bad manual fix would. The audit must name that breach, with
its ids, and nothing else; and the clean state must audit clean (in process and as the CLI)."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2
from miandan.lottery.v1 import lottery_service_pb2 as ls, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.audit import run_audit
from services.common.auth import internal_metadata, open_channel
from services.common.clock import FakeClock
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite

CID = "breach"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
TOMORROW = (dt.datetime.now(SHANGHAI) + dt.timedelta(days=1)).date()
DAY = TOMORROW.isoformat()
AFTER_THE_DRAW = dt.datetime.combine(TOMORROW, dt.time(21, 0), tzinfo=SHANGHAI)


async def _make_clean_campaign(data: Path) -> dict:
    """ann invites three friends and enters tomorrow's draw, which is then run; alice, bob and
    carol sign up; alice and ann pay an order with their card; bob cancels his. Returns the ids."""
    clock = FakeClock(dt.datetime.combine(TOMORROW, dt.time(0, 30), tzinfo=SHANGHAI))
    servers: list = []
    settings = await start_suite(data, CID, servers, lottery_clock=clock)
    try:
        store_id = await seed_campaign_and_store(settings, CID, "breach", "审计", budget_fen=1_000_000)
        md, admin = internal_metadata(settings), internal_metadata(settings, admin=True)
        async with open_channel(settings, settings.card_addr) as card_ch, open_channel(
            settings, settings.order_addr
        ) as order_ch, open_channel(settings, settings.lottery_addr) as lot_ch:
            cards = card_service_pb2_grpc.CardServiceStub(card_ch)
            orders = order_service_pb2_grpc.OrderServiceStub(order_ch)
            lottery = lottery_service_pb2_grpc.LotteryServiceStub(lot_ch)
            for user in ("ann", "alice", "bob", "carol"):
                await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
            code = (await cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id="ann"), metadata=md, timeout=10)).invite_code
            for n in range(3):
                friend = f"ann-friend{n}"
                await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{friend}", campaign_id=CID, user_id=friend), metadata=md, timeout=10)
                await cards.AcceptInvite(
                    cs.AcceptInviteRequest(request_id=f"i-{friend}", campaign_id=CID, invitee_user_id=friend, text=code.code), metadata=md, timeout=10
                )
            await lottery.EnterDraw(ls.EnterDrawRequest(request_id="e-ann", campaign_id=CID, user_id="ann"), metadata=md, timeout=10)
            placed = {}
            for user in ("ann", "alice", "bob"):
                reply = await orders.PlaceOrder(
                    os_.PlaceOrderRequest(request_id=f"o-{user}", user_id=user, store_id=store_id, campaign_id=CID,
                                          lines=[catalog_pb2.LineSelection(item_id="breach-latte", quantity=1)], card_use=order_pb2.CARD_USE_BEST),
                    metadata=md, timeout=10,
                )
                placed[user] = reply.order
            await orders.CancelOrder(os_.CancelOrderRequest(request_id="c-bob", order_id=placed["bob"].order_id, user_id="bob"), metadata=md, timeout=10)
            clock.set(AFTER_THE_DRAW)
            await lottery.RunDraw(ls.RunDrawRequest(request_id="run", campaign_id=CID, day=DAY), metadata=admin, timeout=10)
            assert await run_audit(settings, CID) == []
    finally:
        for server in reversed(servers):
            await server.stop(0)
    return {user: (o.order_id, o.card_id) for user, o in placed.items()}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The clean data directory (stopped suite) and the order and card ids of each buyer."""
    data = tmp_path_factory.mktemp("clean")
    return data, asyncio.run(_make_clean_campaign(data))


@pytest.fixture
def data(clean, tmp_path):
    """A copy of the clean stores to break."""
    copy = tmp_path / "data"
    shutil.copytree(clean[0], copy)
    return copy


def _sql(db: Path, *statements: tuple) -> None:
    with sqlite3.connect(db) as conn:  # behind the stopped service's back
        conn.execute("PRAGMA ignore_check_constraints = 1")  # a bad manual fix does not ask
        for statement in statements:
            conn.execute(*statement)
    conn.close()


def _card(data: Path, user: str, source: int = 1) -> str:
    with sqlite3.connect(data / "card.db") as conn:
        [(card_id,)] = conn.execute("SELECT card_id FROM cards WHERE user_id = ? AND source = ?", (user, source)).fetchall()
    conn.close()
    return card_id


def _edit_order(data: Path, order_id: str, **changes) -> None:
    with sqlite3.connect(data / "order.db") as conn:
        [(doc,)] = conn.execute("SELECT doc FROM orders WHERE order_id = ?", (order_id,)).fetchall()
        doc = json.loads(doc)
        doc.update(changes)
        conn.execute("UPDATE orders SET doc = ? WHERE order_id = ?", (json.dumps(doc, ensure_ascii=False), order_id))
    conn.close()


async def _audit(data: Path) -> list:
    servers: list = []
    settings = await start_suite(data, CID, servers, lottery_clock=FakeClock(AFTER_THE_DRAW))
    try:
        return await run_audit(settings, CID)
    finally:
        for server in reversed(servers):
            await server.stop(0)


def _seen(findings) -> list:
    return sorted((f.check, tuple(sorted(f.ids.items()))) for f in findings)


async def test_the_clean_campaign_audits_clean(data):
    assert await _audit(data) == []


async def test_a_card_redeemed_for_no_order_is_caught(data):
    card = _card(data, "carol")
    _sql(data / "card.db", ("UPDATE cards SET state = 3, order_id = 'ghost-order' WHERE card_id = ?", (card,)))
    assert _seen(await _audit(data)) == [
        ("REDEEMED_CARD_WITHOUT_ORDER", (("card_id", card), ("order_id", "ghost-order"), ("user_id", "carol")))
    ]


async def test_a_card_redeemed_for_a_cancelled_order_is_caught(data, clean):
    order_id, card = clean[1]["bob"]
    _sql(data / "card.db", ("UPDATE cards SET state = 3, order_id = ? WHERE card_id = ?", (order_id, card)))
    assert _seen(await _audit(data)) == [
        ("REDEEMED_CARD_ORDER_NOT_PAID", (("card_id", card), ("order_id", order_id), ("user_id", "bob")))
    ]


async def test_a_paid_order_whose_card_is_available_is_caught(data, clean):
    order_id, card = clean[1]["alice"]
    _sql(data / "card.db", ("UPDATE cards SET state = 1, order_id = '' WHERE card_id = ?", (card,)))
    assert _seen(await _audit(data)) == [
        ("ORDER_CARD_NOT_REDEEMED", (("card_id", card), ("order_id", order_id), ("user_id", "alice")))
    ]


async def test_a_second_card_redeemed_for_one_order_is_caught(data, clean):
    order_id, spent = clean[1]["ann"]
    with sqlite3.connect(data / "card.db") as conn:
        second = conn.execute("SELECT card_id FROM cards WHERE user_id = 'ann' AND state = 1 ORDER BY card_id").fetchone()[0]
    conn.close()
    _sql(data / "card.db", ("UPDATE cards SET state = 3, order_id = ? WHERE card_id = ?", (order_id, second)))
    assert _seen(await _audit(data)) == [
        ("ORDER_SPENT_TWO_CARDS", (("card_id", second), ("order_id", order_id), ("user_id", "ann")))
    ]


async def test_a_user_above_the_cap_is_caught(data):
    # A bad manual fix lowers the cap below what ann (1 sign-up + 3 inviter cards) was granted.
    _sql(data / "card.db", ("UPDATE campaigns SET per_user_card_cap = 3 WHERE campaign_id = ?", (CID,)))
    assert _seen(await _audit(data)) == [("USER_CAP_EXCEEDED", (("campaign_id", CID), ("user_id", "ann")))]


def _grant_behind_the_rules(data: Path, user: str, source: int, card_id: str) -> None:
    """A card granted by a bug that kept every counter right but broke a rule."""
    _sql(
        data / "card.db",
        ("INSERT INTO cards (card_id, campaign_id, user_id, state, source, face_value_fen, grant_ms, expire_ms, cause, changed_ms) "
         "SELECT ?, campaign_id, ?, 1, ?, face_value_fen, grant_ms, expire_ms, cause, changed_ms FROM cards WHERE user_id = ? AND source = 1",
         (card_id, user, source, user)),
        ("UPDATE campaigns SET issued_fen = issued_fen + (SELECT face_value_fen FROM cards WHERE card_id = ?), cards_issued = cards_issued + 1 "
         "WHERE campaign_id = ?", (card_id, CID)),
        ("UPDATE members SET cards_granted = cards_granted + 1 WHERE campaign_id = ? AND user_id = ?", (CID, user)),
    )


async def test_a_second_signup_card_is_caught(data):
    _grant_behind_the_rules(data, "carol", 1, "carol-signup-again")
    assert _seen(await _audit(data)) == [("SIGNUP_GRANTED_TWICE", (("campaign_id", CID), ("user_id", "carol")))]


async def test_issued_face_value_above_the_budget_is_caught(data):
    with sqlite3.connect(data / "card.db") as conn:
        [(issued,)] = conn.execute("SELECT issued_fen FROM campaigns WHERE campaign_id = ?", (CID,)).fetchall()
    conn.close()
    _sql(data / "card.db", ("UPDATE campaigns SET budget_fen = ? WHERE campaign_id = ?", (issued - 1, CID)))
    # Both ways it shows: the cards sum above the budget, and GetBudget's issued_fen above it.
    assert {code for code, _ in _seen(await _audit(data))} == {"BUDGET_EXCEEDED"}


async def test_issued_face_value_not_the_sum_of_the_cards_is_caught(data):
    _sql(data / "card.db", ("UPDATE campaigns SET issued_fen = issued_fen + 100 WHERE campaign_id = ?", (CID,)))
    assert _seen(await _audit(data)) == [("ISSUED_MISMATCH", (("campaign_id", CID),))]


async def test_a_card_count_not_the_number_of_cards_is_caught(data):
    _sql(data / "card.db", ("UPDATE campaigns SET cards_issued = cards_issued - 1 WHERE campaign_id = ?", (CID,)))
    assert _seen(await _audit(data)) == [("ISSUED_COUNT_MISMATCH", (("campaign_id", CID),))]


async def test_a_hold_the_sweeper_never_released_reads_available_and_audits_clean(data, monkeypatch):
    # Every read of the card service looks through a lapsed hold (model.effective_state) and the
    # next write or sweep releases it, so a stuck sweeper leaves nothing the audit should report:
    # RESERVATION_PAST_TTL is for a card service that would show the lapsed hold as held.
    from services.card.store import SqliteCardStore

    async def failing_sweep(self, now_ms, limit=500):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(SqliteCardStore, "sweep", failing_sweep)
    card = _card(data, "carol")
    _sql(data / "card.db", ("UPDATE cards SET state = 2, order_id = 'stuck-order', reserved_until_ms = 1000 WHERE card_id = ?", (card,)))
    assert await _audit(data) == []


async def test_an_inviter_counter_one_below_its_invites_is_caught(data):
    _sql(data / "card.db", ("UPDATE members SET invites_made = invites_made - 1 WHERE campaign_id = ? AND user_id = 'ann'", (CID,)))
    assert _seen(await _audit(data)) == [("INVITE_COUNTER_MISMATCH", (("campaign_id", CID), ("user_id", "ann")))]


async def test_a_rewarded_invite_whose_inviter_card_was_taken_back_is_caught(data):
    # A bad manual fix deletes one of ann's inviter cards and keeps every counter in step.
    with sqlite3.connect(data / "card.db") as conn:
        card, value = conn.execute(
            "SELECT card_id, face_value_fen FROM cards WHERE user_id = 'ann' AND source = 2 AND state = 1 ORDER BY card_id"
        ).fetchone()
    conn.close()
    _sql(
        data / "card.db",
        ("DELETE FROM cards WHERE card_id = ?", (card,)),
        ("UPDATE card_totals SET face_value_fen = face_value_fen - ? WHERE campaign_id = ? AND state = 1", (value, CID)),
        ("UPDATE campaigns SET issued_fen = issued_fen - ?, cards_issued = cards_issued - 1 WHERE campaign_id = ?", (value, CID)),
        ("UPDATE members SET cards_granted = cards_granted - 1 WHERE campaign_id = ? AND user_id = 'ann'", (CID,)),
    )
    assert _seen(await _audit(data)) == [("INVITER_CARDS_MISMATCH", (("campaign_id", CID), ("user_id", "ann")))]


async def test_an_entrant_who_was_not_qualified_at_the_cut_off_is_caught(data):
    # One of ann's three invites really came after the day's cut-off: she entered on two.
    _sql(data / "card.db", ("UPDATE invites SET accept_ms = accept_ms + 3 * 86400000 WHERE campaign_id = ? AND invitee_user_id = 'ann-friend2'", (CID,)))
    assert _seen(await _audit(data)) == [("ENTRANT_NOT_QUALIFIED", (("campaign_id", CID), ("day", DAY), ("user_id", "ann")))]


async def test_more_winners_than_the_draw_allows_is_caught(data):
    _sql(data / "lottery.db", ("UPDATE draws SET winners = '[\"ann\", \"alice\"]', winner_count = 1 WHERE campaign_id = ? AND day = ?", (CID, DAY)))
    draw = (("campaign_id", CID), ("day", DAY))
    assert _seen(await _audit(data)) == [("DRAW_DOES_NOT_VERIFY", draw), ("TOO_MANY_WINNERS", draw), ("WINNER_NOT_ENTRANT", draw)]


async def test_winners_that_do_not_follow_from_the_seed_are_caught(data):
    _sql(data / "lottery.db", ("UPDATE draws SET winners = '[\"carol\"]' WHERE campaign_id = ? AND day = ?", (CID, DAY)))
    draw = (("campaign_id", CID), ("day", DAY))
    assert _seen(await _audit(data)) == [("DRAW_DOES_NOT_VERIFY", draw), ("WINNER_FLAG_MISMATCH", draw), ("WINNER_NOT_ENTRANT", draw)]


async def test_a_paid_order_asking_the_wrong_amount_is_caught(data, clean):
    order_id, card = clean[1]["alice"]
    _edit_order(data, order_id, pay=1)
    assert _seen(await _audit(data)) == [("PAYABLE_MISMATCH", (("card_id", card), ("order_id", order_id), ("user_id", "alice")))]


async def test_one_card_spent_on_two_paid_orders_is_caught(data, clean):
    alice_order, alice_card = clean[1]["alice"]
    bob_order, _ = clean[1]["bob"]
    # bob's cancelled order rewritten as paid with alice's card, as a bad manual "un-cancel".
    _edit_order(data, bob_order, status="PAID", card=alice_card, cr="")
    _sql(data / "order.db", ("UPDATE orders SET status = 'PAID' WHERE order_id = ?", (bob_order,)))
    assert _seen(await _audit(data)) == [
        ("CARD_DOUBLE_SPENT", (("card_id", alice_card), ("order_id", alice_order), ("user_id", "alice"))),
        ("CARD_OWNER_MISMATCH", (("card_id", alice_card), ("order_id", bob_order), ("user_id", "bob"))),
    ]


async def test_an_entrant_slipped_into_a_drawn_day_is_caught(data):
    _sql(data / "lottery.db", ("INSERT INTO entries (campaign_id, day, user_id, entry_ms) SELECT campaign_id, day, 'carol', entry_ms FROM entries WHERE user_id = 'ann'",))
    draw = (("campaign_id", CID), ("day", DAY))
    assert _seen(await _audit(data)) == [
        ("DRAW_DOES_NOT_VERIFY", draw), ("DRAW_ENTRANTS_HASH_MISMATCH", draw), ("DRAW_ENTRANT_COUNT_MISMATCH", draw),
        ("ENTRANT_NOT_QUALIFIED", draw + (("user_id", "carol"),)),
    ]


async def test_a_redeemed_total_that_drifted_from_the_cards_is_caught(data):
    _sql(data / "card.db", ("UPDATE card_totals SET face_value_fen = face_value_fen + 5 WHERE campaign_id = ? AND state = 3", (CID,)))
    assert _seen(await _audit(data)) == [("REDEEMED_VALUE_MISMATCH", (("campaign_id", CID),))]


async def test_a_card_whose_face_value_was_raised_is_caught(data):
    card = _card(data, "carol")
    _sql(data / "card.db", ("UPDATE cards SET face_value_fen = face_value_fen * 4 WHERE card_id = ?", (card,)))
    assert _seen(await _audit(data)) == [("ISSUED_MISMATCH", (("campaign_id", CID),))]


async def test_an_invite_turned_into_a_self_invite_is_caught(data):
    _sql(data / "card.db", ("UPDATE invites SET inviter_user_id = invitee_user_id WHERE invitee_user_id = 'ann-friend1'",))
    found = _seen(await _audit(data))
    assert ("SELF_INVITE", (("campaign_id", CID), ("user_id", "ann-friend1"))) in found
    # ann entered on that invite: she no longer qualifies, and her counters no longer add up.
    assert ("ENTRANT_NOT_QUALIFIED", (("campaign_id", CID), ("day", DAY), ("user_id", "ann"))) in found
    assert ("INVITE_COUNTER_MISMATCH", (("campaign_id", CID), ("user_id", "ann"))) in found


async def test_a_spent_card_handed_to_another_user_is_caught(data, clean):
    alice_order, alice_card = clean[1]["alice"]
    _sql(data / "card.db", ("UPDATE cards SET user_id = 'carol' WHERE card_id = ?", (alice_card,)))
    found = _seen(await _audit(data))
    assert ("CARD_OWNER_MISMATCH", (("card_id", alice_card), ("order_id", alice_order), ("user_id", "alice"))) in found
    assert ("CARDS_GRANTED_MISMATCH", (("campaign_id", CID), ("user_id", "carol"))) in found


ROOT = Path(__file__).resolve().parents[3]


async def _cli(settings) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}", MIANDAN_CARD_ADDR=settings.card_addr,
               MIANDAN_ORDER_ADDR=settings.order_addr, MIANDAN_LOTTERY_ADDR=settings.lottery_addr)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miandan", "audit", "--campaign", CID, "--confirm-after", "0.1",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


async def _cli_on(data: Path) -> tuple[int, str]:
    servers: list = []
    settings = await start_suite(data, CID, servers, lottery_clock=FakeClock(AFTER_THE_DRAW))
    try:
        return await _cli(settings)
    finally:
        for server in reversed(servers):
            await server.stop(0)


async def test_the_cli_exits_0_on_the_clean_campaign_and_1_naming_a_breach(data, clean):
    code, out = await _cli_on(data)
    assert code == 0 and "OK: every invariant holds" in out, out
    order_id, card = clean[1]["bob"]
    _sql(data / "card.db", ("UPDATE cards SET state = 3, order_id = ? WHERE card_id = ?", (order_id, card)))
    code, out = await _cli_on(data)
    assert code == 1, out
    [line] = [line for line in out.splitlines() if line.startswith("FINDING")]
    assert line.startswith("FINDING REDEEMED_CARD_ORDER_NOT_PAID") and f"card_id={card}" in line and f"order_id={order_id}" in line, out
