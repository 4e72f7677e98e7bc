"""The wallet promises only what a grant would give: once the budget cannot pay for another
card, or outside the campaign's window, cards_obtainable is 0 and the pass-phrase a user shares
no longer promises a card (it still carries the code: an invite may count for the lottery)."""
from datetime import timedelta

import grpc
import pytest

from services.common.errors import error_details

from .conftest import START

C = "spring"
FACE = 2_500
PROMISE = "复制这段口令，打开App领25元免单卡"
NO_PROMISE = "复制这段口令，打开App参与免单活动"


async def wallet_of(card, user):
    return (await card.GetWallet(campaign_id=C, user_id=user)).wallet


async def shared_text(card, user):
    return (await card.GetInviteCode(campaign_id=C, user_id=user)).invite_code.pass_phrase_text


async def test_a_normal_campaign_offers_what_the_cap_leaves_and_promises_a_card(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    w = await wallet_of(card, "alice")
    assert (w.cards_granted, w.cards_obtainable, w.card_cap) == (1, 20, 21)
    assert w.pass_phrase_text == f"¥{w.invite_code}¥ {PROMISE}"
    assert await shared_text(card, "alice") == w.pass_phrase_text


async def test_a_budget_exactly_spent_offers_no_card_and_the_phrase_promises_none(card):
    await card.campaign(C, budget_fen=2 * FACE)
    for user in ("alice", "bob"):
        await card.ClaimSignupCard(campaign_id=C, user_id=user)
    assert (await card.GetBudget(campaign_id=C)).budget.remaining_fen == 0
    w = await wallet_of(card, "alice")
    assert (w.cards_granted, w.cards_obtainable) == (1, 0)
    assert w.pass_phrase_text == f"¥{w.invite_code}¥ {NO_PROMISE}"
    assert await shared_text(card, "alice") == w.pass_phrase_text
    # The promise matches what a grant does now.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.ClaimSignupCard(campaign_id=C, user_id="carol")
    assert error_details(err.value)["reason"] == "CAMPAIGN_BUDGET_EXHAUSTED"
    assert (await wallet_of(card, "carol")).cards_obtainable == 0


async def test_the_honest_phrase_still_carries_a_code_that_accepts_the_invite(card):
    await card.campaign(C, budget_fen=FACE)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    phrase = (await wallet_of(card, "alice")).pass_phrase_text
    assert NO_PROMISE in phrase
    accepted = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=phrase)
    assert accepted.newly_accepted and accepted.invite.inviter_user_id == "alice"
    assert (await wallet_of(card, "alice")).invites_made == 1


async def test_a_budget_with_room_for_one_card_offers_that_one_and_keeps_the_promise(card):
    await card.campaign(C, budget_fen=4 * FACE - 1)  # after two cards: room for one more, not two
    for user in ("alice", "bob"):
        await card.ClaimSignupCard(campaign_id=C, user_id=user)
    w = await wallet_of(card, "alice")
    assert (w.cards_granted, w.cards_obtainable) == (1, 1)
    assert w.pass_phrase_text == f"¥{w.invite_code}¥ {PROMISE}"
    assert await shared_text(card, "alice") == w.pass_phrase_text
    claimed = await card.ClaimSignupCard(campaign_id=C, user_id="carol")
    assert len(claimed.cards) == 1
    w = await wallet_of(card, "alice")
    assert (w.cards_obtainable, NO_PROMISE in w.pass_phrase_text) == (0, True)


@pytest.mark.parametrize("when", ["ended", "not started"])
async def test_a_campaign_outside_its_window_offers_no_card_and_the_phrase_promises_none(card, clock, when):
    if when == "ended":
        await card.campaign(C, days=1)
        await card.ClaimSignupCard(campaign_id=C, user_id="alice")
        clock.advance(days=1)
    else:
        await card.campaign(C, start=START + timedelta(days=2))
    w = await wallet_of(card, "alice")
    assert w.cards_obtainable == 0 and w.card_cap == 21
    assert w.pass_phrase_text == f"¥{w.invite_code}¥ {NO_PROMISE}"
    assert await shared_text(card, "alice") == w.pass_phrase_text


async def test_a_sign_up_grant_of_two_cards_that_the_rest_of_the_budget_cannot_pay_promises_no_card(card):
    # A grant is given whole or not at all: a friend's Join first claims the sign-up grant of two
    # cards, which one card's worth of budget does not pay for, and the invite's top-up to the
    # joining grant costs as much. Nothing the phrase could promise the friend would come.
    await card.campaign(C, budget_fen=5 * FACE, signup_grant=2)
    for user in ("alice", "bob"):
        await card.ClaimSignupCard(campaign_id=C, user_id=user)
    w = await wallet_of(card, "alice")
    assert w.pass_phrase_text == f"¥{w.invite_code}¥ {NO_PROMISE}"
    assert await shared_text(card, "alice") == w.pass_phrase_text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(campaign_id=C, invitee_user_id="carol", text=w.invite_code, claim_signup=True)
    assert error_details(err.value)["reason"] == "CAMPAIGN_BUDGET_EXHAUSTED"
    alone = await card.AcceptInvite(campaign_id=C, invitee_user_id="carol", text=w.invite_code)
    assert alone.newly_accepted and not alone.invite.invitee_rewarded and not alone.invitee_cards
