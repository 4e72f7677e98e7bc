"""The audit against the real card, catalog, order and lottery servers (their wiring.build, real
SQLite on tmp_path, port 0): clean after real traffic, and it catches a card whose store row was
tampered with behind the services' back."""
from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.audit import run_audit
from services.common.auth import internal_metadata, open_channel
from services.common.clock import FakeClock
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite

CID = "audit-it"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
TOMORROW = (dt.datetime.now(SHANGHAI) + dt.timedelta(days=1)).date()
LOTTERY_CLOCK = FakeClock(dt.datetime.combine(TOMORROW, dt.time(0, 30), tzinfo=SHANGHAI))


@pytest.fixture
async def suite(tmp_path):
    servers = []
    # The lottery lives early tomorrow (campaign time): today's invites count for tomorrow's draw,
    # and the test moves its clock past the cut-off instead of waiting for it.
    settings = await start_suite(tmp_path, CID, servers, lottery_clock=LOTTERY_CLOCK)
    try:
        yield settings, tmp_path
    finally:
        for server in reversed(servers):
            await server.stop(0)


async def _seed(settings) -> str:
    return await seed_campaign_and_store(settings, CID, "audit", "审计", budget_fen=1_000_000)


async def test_real_traffic_audits_clean_and_a_tampered_card_is_caught(suite):
    settings, data = suite
    store_id = await _seed(settings)
    md = internal_metadata(settings)
    async with open_channel(settings, settings.card_addr) as card_ch, open_channel(settings, settings.order_addr) as order_ch:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        orders = order_service_pb2_grpc.OrderServiceStub(order_ch)
        for user in ("alice", "bob", "carol"):
            await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
        code = (await cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id="alice"), metadata=md, timeout=10)).invite_code
        await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id="s-dave", campaign_id=CID, user_id="dave"), metadata=md, timeout=10)
        await cards.AcceptInvite(cs.AcceptInviteRequest(request_id="i-dave", campaign_id=CID, invitee_user_id="dave", text=code.pass_phrase_text), metadata=md, timeout=10)
        placed = []
        for user in ("alice", "bob", "dave"):
            reply = await orders.PlaceOrder(
                os_.PlaceOrderRequest(request_id=f"o-{user}", user_id=user, store_id=store_id, campaign_id=CID,
                                      lines=[catalog_pb2.LineSelection(item_id="audit-latte", quantity=1)], card_use=order_pb2.CARD_USE_BEST),
                metadata=md, timeout=10,
            )
            placed.append(reply.order)
        assert [o.status for o in placed] == [order_pb2.ORDER_STATUS_PAID] * 3 and all(o.card_id for o in placed)
        await orders.CancelOrder(os_.CancelOrderRequest(request_id="c-bob", order_id=placed[1].order_id, user_id="bob"), metadata=md, timeout=10)

    assert await run_audit(settings, CID) == []

    spent = placed[0]
    with sqlite3.connect(data / "card.db") as db:  # behind the card service's back
        db.execute("UPDATE cards SET state = 1, order_id = '' WHERE card_id = ?", (spent.card_id,))
    findings = await run_audit(settings, CID)
    assert {(f.check, f.ids.get("card_id")) for f in findings} >= {("ORDER_CARD_NOT_REDEEMED", spent.card_id)}, findings


async def test_a_real_draw_verifies_and_its_entrants_qualified_and_a_winner_told_it_lost_is_caught(suite):
    from miandan.lottery.v1 import lottery_service_pb2 as ls, lottery_service_pb2_grpc

    settings, data = suite
    await _seed(settings)
    md = internal_metadata(settings)
    admin = internal_metadata(settings, admin=True)
    async with open_channel(settings, settings.card_addr) as card_ch, open_channel(settings, settings.lottery_addr) as lot_ch:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        lottery = lottery_service_pb2_grpc.LotteryServiceStub(lot_ch)
        entrants = []
        for inviter in ("ann", "ben"):
            await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{inviter}", campaign_id=CID, user_id=inviter), metadata=md, timeout=10)
            code = (await cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id=inviter), metadata=md, timeout=10)).invite_code
            for n in range(3):
                invitee = f"{inviter}-friend{n}"
                await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{invitee}", campaign_id=CID, user_id=invitee), metadata=md, timeout=10)
                await cards.AcceptInvite(
                    cs.AcceptInviteRequest(request_id=f"i-{invitee}", campaign_id=CID, invitee_user_id=invitee, text=code.code), metadata=md, timeout=10
                )
            await lottery.EnterDraw(ls.EnterDrawRequest(request_id=f"e-{inviter}", campaign_id=CID, user_id=inviter), metadata=md, timeout=10)
            entrants.append(inviter)
        day = TOMORROW.isoformat()
        LOTTERY_CLOCK.set(dt.datetime.combine(TOMORROW, dt.time(21, 0), tzinfo=SHANGHAI))
        drawn = (await lottery.RunDraw(ls.RunDrawRequest(request_id="run", campaign_id=CID, day=day), metadata=admin, timeout=10)).draw
        assert sorted(drawn.winners) == entrants  # fewer entrants than winner_count: all win

    assert await run_audit(settings, CID) == []
    from services.audit.fetch import Targets, fetch_facts

    facts = await fetch_facts(Targets.resolve(settings), CID)
    [draw] = [d for d in facts.draws if d.day == day]
    assert draw.status == "DRAWN" and list(draw.entrants) == entrants and draw.seed and draw.entrants_hash

    # Each entry keeps its own won flag (ListMyEntries: what the user is told), beside the draw's
    # winners list: the two must name the same users.
    with sqlite3.connect(data / "lottery.db") as db:  # behind the lottery service's back
        db.execute("UPDATE entries SET won = 0 WHERE campaign_id = ? AND day = ? AND user_id = 'ben'", (CID, day))
    findings = await run_audit(settings, CID)
    assert [(f.check, f.ids.get("day")) for f in findings] == [("WINNER_FLAG_MISMATCH", day)], findings
    assert "ben" in findings[0].message


async def _join_family(settings) -> None:
    """alice signs up; bob and carol join with her code: alice has 3 cards and 2 invites."""
    md = internal_metadata(settings)
    async with open_channel(settings, settings.card_addr) as ch:
        cards = card_service_pb2_grpc.CardServiceStub(ch)
        await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id="s-alice", campaign_id=CID, user_id="alice"), metadata=md, timeout=10)
        code = (await cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id="alice"), metadata=md, timeout=10)).invite_code
        for user in ("bob", "carol"):
            await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
            await cards.AcceptInvite(
                cs.AcceptInviteRequest(request_id=f"i-{user}", campaign_id=CID, invitee_user_id=user, text=code.code), metadata=md, timeout=10
            )


async def test_an_invite_counted_twice_in_the_inviters_wallet_is_caught(suite):
    # The wallet's invites_made (lottery progress, "qualified" on the phone) is a counter kept
    # beside the invite rows; one invite counted twice shows a user qualified who is not.
    settings, data = suite
    await _seed(settings)
    await _join_family(settings)
    assert await run_audit(settings, CID) == []

    with sqlite3.connect(data / "card.db") as db:  # behind the card service's back
        db.execute("UPDATE members SET invites_made = invites_made + 1 WHERE campaign_id = ? AND user_id = 'alice'", (CID,))
    findings = await run_audit(settings, CID)
    assert [(f.check, f.ids.get("user_id")) for f in findings] == [("INVITE_COUNTER_MISMATCH", "alice")], findings


async def test_a_cap_counter_that_drifted_from_the_users_cards_is_caught(suite):
    # The per-user cap is enforced on members.cards_granted: a counter below the cards held
    # would let the user collect cards past the cap before any card count shows it.
    settings, data = suite
    await _seed(settings)
    await _join_family(settings)

    with sqlite3.connect(data / "card.db") as db:
        db.execute("UPDATE members SET cards_granted = 0 WHERE campaign_id = ? AND user_id = 'alice'", (CID,))
    findings = await run_audit(settings, CID)
    assert [(f.check, f.ids.get("user_id")) for f in findings] == [("CARDS_GRANTED_MISMATCH", "alice")], findings
