"""Invariants under concurrency: hundreds of calls at once over real gRPC (asyncio.gather)."""
import asyncio
from collections import Counter

import grpc

from miandan.card.v1 import card_pb2
from services.common.errors import error_details

C = "spring"


async def outcomes(calls):
    """Run all calls at once; returns (successes, Counter of failure reasons)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[error_details(r)["reason"]] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            ok.append(r)
    return ok, reasons


async def test_200_concurrent_invites_leave_the_inviter_exactly_at_the_cap(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code
    invitees = [f"friend{n}" for n in range(200)]
    ok, reasons = await outcomes([card.ClaimSignupCard(campaign_id=C, user_id=u) for u in invitees])
    assert len(ok) == 200, reasons
    ok, reasons = await outcomes(
        [card.AcceptInvite(campaign_id=C, invitee_user_id=u, text=code.pass_phrase_text) for u in invitees]
    )
    assert len(ok) == 200, reasons
    assert sum(r.invite.inviter_rewarded for r in ok) == 20  # 1 sign-up + 20 = cap 21
    # Each friend's sign-up card of the same join is its invitee card: no second card.
    assert not any(r.invite.invitee_rewarded for r in ok)
    assert {r.invitee_not_rewarded_reason for r in ok} == {"SIGNUP_CARD_COUNTED"}
    assert all(len(r.invitee_cards) == 1 and r.invitee_cards[0].source == card_pb2.CARD_SOURCE_SIGNUP for r in ok)
    wallet = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    assert wallet.cards_granted == 21 and wallet.invites_made == 200
    listed = await card.ListCards(campaign_id=C, user_id="alice", page_size=100)
    assert len(listed.cards) == 21
    stats = await card.GetInviteStats(campaign_id=C, user_id="alice")
    assert stats.invited_count == 200
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.cards_issued == 1 + 200 + 20


async def test_concurrent_grants_against_a_budget_of_n_cards_grant_exactly_n(card):
    await card.campaign(C, budget_fen=50 * 2500)
    ok, reasons = await outcomes([card.ClaimSignupCard(campaign_id=C, user_id=f"u{n}") for n in range(250)])
    assert len(ok) == 50
    assert reasons == Counter({"CAMPAIGN_BUDGET_EXHAUSTED": 200})
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.issued_fen == budget.budget_fen == 50 * 2500 and budget.remaining_fen == 0 and budget.cards_issued == 50
    cards = (await card.ListCampaignCards(campaign_id=C, page_size=1000)).cards
    assert len(cards) == 50


async def test_100_concurrent_reservations_of_one_card_let_exactly_one_order_win(card):
    await card.campaign(C)
    target = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    ok, reasons = await outcomes([
        card.ReserveCard(campaign_id=C, user_id="alice", order_id=f"o{n}", amount_fen=1000, card_id=target.card_id)
        for n in range(100)
    ])
    assert len(ok) == 1 and reasons == Counter({"CARD_NOT_AVAILABLE": 99})
    history = (await card.GetCardHistory(card_id=target.card_id)).entries
    assert [e.cause for e in history] == ["GRANT_SIGNUP", "RESERVE"]


async def test_100_concurrent_orders_without_a_named_card_spend_each_card_once(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    for n in range(3):
        await card.ClaimSignupCard(campaign_id=C, user_id=f"f{n}")
        code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
        await card.AcceptInvite(campaign_id=C, invitee_user_id=f"f{n}", text=code)
    ok, reasons = await outcomes([
        card.ReserveCard(campaign_id=C, user_id="alice", order_id=f"o{n}", amount_fen=1000) for n in range(100)
    ])
    assert len(ok) == 4 and reasons == Counter({"NO_CARD_AVAILABLE": 96})
    assert len({r.card.card_id for r in ok}) == 4


async def test_the_same_request_retried_50_times_at_once_has_one_effect(card):
    await card.campaign(C)
    claims, reasons = await outcomes(
        [card.ClaimSignupCard(request_id="join-alice", campaign_id=C, user_id="alice") for _ in range(50)]
    )
    assert len(claims) == 50 and not reasons
    assert sum(r.newly_granted for r in claims) == 1 and len({r.cards[0].card_id for r in claims}) == 1

    await card.ClaimSignupCard(campaign_id=C, user_id="bob")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    accepts, reasons = await outcomes(
        [card.AcceptInvite(request_id="inv-bob", campaign_id=C, invitee_user_id="bob", text=code) for _ in range(50)]
    )
    assert len(accepts) == 50 and sum(r.newly_accepted for r in accepts) == 1

    holds, reasons = await outcomes([
        card.ReserveCard(request_id="res-o1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=900)
        for _ in range(50)
    ])
    assert len(holds) == 50 and len({r.card.card_id for r in holds}) == 1
    confirms, reasons = await outcomes([card.ConfirmReservation(request_id="cf-o1", order_id="o1") for _ in range(50)])
    assert len(confirms) == 50
    refunds, reasons = await outcomes([card.RefundCard(request_id="rf-o1", order_id="o1") for _ in range(50)])
    assert len(refunds) == 50 and all(r.returned for r in refunds)

    wallet = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    assert wallet.cards_granted == 2 and wallet.invites_made == 1
    assert {t.state: t.count for t in wallet.totals}[card_pb2.CARD_STATE_AVAILABLE] == 2
    causes = [e.cause for e in (await card.GetCardHistory(card_id=holds[0].card.card_id)).entries]
    assert causes.count("RESERVE") == causes.count("CONFIRM") == causes.count("REFUND") == 1
