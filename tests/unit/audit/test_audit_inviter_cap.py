"""INVITER_CARDS_MISMATCH and the per-user cap: the card service grants an inviter what is left
under its cap when a full inviter_grant would pass it (services/card/model.py grant_size), and
marks the invite rewarded when it gave at least one card. The audit sees every card ever granted
(ListCampaignCards, any state) and each invite's inviter_rewarded (GetInviteStats), so it can
tell that legitimate short grant from a real mismatch exactly."""
from __future__ import annotations

import pytest

from services.audit.model import (
    AuditFacts,
    BudgetFacts,
    CampaignFacts,
    CardFacts,
    InviteFacts,
    InviterFacts,
    audit,
    check_invites,
)

CID = "spring"
FACE = 2_500
# The campaign of the report: cap 4, two cards per accepted invite, one for signing up or joining.
CAMPAIGN = CampaignFacts(campaign_id=CID, budget_fen=1_000_000, per_user_card_cap=4, signup_grant=1, inviter_grant=2, invitee_grant=1)


def cards_of(user: str, *sources: str) -> list[CardFacts]:
    return [CardFacts(f"{user}-{i}", CID, user, "AVAILABLE", s, FACE) for i, s in enumerate(sources)]


def invite(invitee: str, rewarded: bool, invitee_rewarded: bool = True, inviter: str = "alice") -> InviteFacts:
    return InviteFacts(inviter, invitee, inviter_rewarded=rewarded, invitee_rewarded=invitee_rewarded)


def capped_world() -> tuple[list[InviterFacts], list[CardFacts]]:
    """alice signs up (1 card), bob's invite gives her 2 (3), carol's the 1 left under the cap (4),
    dave's nothing (not rewarded). bob and carol accepted before signing up (an invitee card each),
    dave signed up first (his sign-up card is his joining card)."""
    inviters = [
        InviterFacts("alice", 3, (invite("bob", True), invite("carol", True), invite("dave", False, invitee_rewarded=False))),
        InviterFacts("bob", 0, ()),
        InviterFacts("carol", 0, ()),
        InviterFacts("dave", 0, ()),
    ]
    cards = (
        cards_of("alice", "SIGNUP", "INVITER", "INVITER", "INVITER")
        + cards_of("bob", "INVITEE")
        + cards_of("carol", "INVITEE")
        + cards_of("dave", "SIGNUP")
    )
    return inviters, cards


def test_a_grant_cut_short_by_the_cap_is_no_finding():
    inviters, cards = capped_world()
    assert check_invites(CAMPAIGN, inviters, cards) == []


def test_the_full_audit_of_the_capped_world_is_clean():
    inviters, cards = capped_world()
    n = len(cards)
    facts = AuditFacts(
        campaigns=[CAMPAIGN],
        budgets={CID: BudgetFacts(CID, CAMPAIGN.budget_fen, n * FACE, 0, 0, CAMPAIGN.budget_fen - n * FACE, n)},
        cards=cards,
        inviters={CID: inviters},
        now_ms=1,
    )
    assert audit(facts) == []


def test_the_cut_short_grant_counts_every_card_whatever_its_state():
    inviters, cards = capped_world()
    # alice's sign-up card expired: it still counts toward her cap.
    cards = [c if c.card_id != "alice-0" else CardFacts("alice-0", CID, "alice", "EXPIRED", "SIGNUP", FACE) for c in cards]
    assert check_invites(CAMPAIGN, inviters, cards) == []


def _mismatch(inviters, cards, campaign=CAMPAIGN) -> list[tuple[str, str]]:
    return [(f.check, f.ids["user_id"]) for f in check_invites(campaign, inviters, cards)]


def test_a_short_grant_of_a_user_below_the_cap_is_found():
    inviters, cards = capped_world()
    roomier = CampaignFacts(**{**CAMPAIGN.__dict__, "per_user_card_cap": 5})
    assert _mismatch(inviters, cards, roomier) == [("INVITER_CARDS_MISMATCH", "alice")]


def test_a_short_grant_without_the_cards_that_reach_the_cap_is_found():
    inviters, cards = capped_world()
    cards = [c for c in cards if c.card_id != "alice-0"]  # 3 cards: not at the cap of 4
    assert _mismatch(inviters, cards) == [("INVITER_CARDS_MISMATCH", "alice")]


def test_a_rewarded_invite_that_gave_nothing_is_found_even_at_the_cap():
    # Two rewarded invites but only 2 inviter cards: one of them gave nothing, yet says rewarded.
    campaign = CampaignFacts(**{**CAMPAIGN.__dict__, "per_user_card_cap": 3})
    inviters = [InviterFacts("alice", 2, (invite("bob", True), invite("carol", True)))]
    cards = cards_of("alice", "SIGNUP", "INVITER", "INVITER") + cards_of("bob", "INVITEE") + cards_of("carol", "INVITEE")
    assert _mismatch(inviters, cards, campaign) == [("INVITER_CARDS_MISMATCH", "alice")]


def test_two_short_grants_are_found():
    inviters = [InviterFacts("alice", 3, (invite("bob", True), invite("carol", True), invite("dave", True)))]
    campaign = CampaignFacts(**{**CAMPAIGN.__dict__, "per_user_card_cap": 5})
    # 2 + 1 + 1: after the first short grant she was at the cap, the next could give nothing.
    cards = cards_of("alice", "SIGNUP", "INVITER", "INVITER", "INVITER", "INVITER")
    cards += cards_of("bob", "INVITEE") + cards_of("carol", "INVITEE") + cards_of("dave", "INVITEE")
    assert _mismatch(inviters, cards, campaign) == [("INVITER_CARDS_MISMATCH", "alice")]


def test_more_inviter_cards_than_rewarded_invites_give_are_found_at_the_cap_too():
    inviters = [InviterFacts("alice", 1, (invite("bob", True),))]
    cards = cards_of("alice", "INVITER", "INVITER", "INVITER", "INVITER") + cards_of("bob", "INVITEE")
    assert _mismatch(inviters, cards) == [("INVITER_CARDS_MISMATCH", "alice")]


def test_inviter_cards_without_a_rewarded_invite_are_found_at_the_cap_too():
    inviters = [InviterFacts("alice", 1, (invite("bob", False),))]
    cards = cards_of("alice", "SIGNUP", "INVITER", "INVITEE", "INVITEE") + cards_of("bob", "INVITEE")
    assert ("INVITER_CARDS_MISMATCH", "alice") in _mismatch(inviters, cards)


@pytest.mark.parametrize("inviter_cards, ok", [(3, False), (4, True), (5, True), (6, True), (7, False)])
def test_only_the_last_rewarded_grant_may_be_short(inviter_cards, ok):
    # inviter_grant 3, two rewarded invites, cap reached: 3 + (1..3) inviter cards are possible.
    campaign = CampaignFacts(campaign_id=CID, budget_fen=10**9, per_user_card_cap=inviter_cards + 1, inviter_grant=3)
    inviters = [InviterFacts("alice", 2, (invite("bob", True), invite("carol", True)))]
    cards = cards_of("alice", "SIGNUP", *["INVITER"] * inviter_cards) + cards_of("bob", "INVITEE") + cards_of("carol", "INVITEE")
    assert (_mismatch(inviters, cards, campaign) == []) is ok
