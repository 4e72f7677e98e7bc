"""include_wallet on ClaimSignupCard and AcceptInvite: the write answers with exactly what
GetWallet(include_available_cards) answers right after it, new cards included, on first calls
and on replays; without the flag, and on failures, no wallet."""
import asyncio

import grpc
import pytest

from services.common.errors import error_details

C = "spring"


async def wallet_now(card, user):
    return await card.GetWallet(campaign_id=C, user_id=user, include_available_cards=True)


async def test_a_claim_with_include_wallet_returns_the_wallet_with_its_new_cards(card):
    await card.campaign(C, signup_grant=2)
    claimed = await card.ClaimSignupCard(request_id="j-alice", campaign_id=C, user_id="alice", include_wallet=True)
    assert claimed.newly_granted and claimed.HasField("wallet")
    assert claimed.wallet == await wallet_now(card, "alice")
    assert sorted(c.card_id for c in claimed.wallet.available_cards) == sorted(c.card_id for c in claimed.cards)
    assert claimed.wallet.wallet.cards_granted == 2 and claimed.wallet.wallet.invite_code


async def test_a_replayed_claim_returns_the_same_wallet_as_get_wallet(card):
    await card.campaign(C)
    first = await card.ClaimSignupCard(request_id="j-alice", campaign_id=C, user_id="alice", include_wallet=True)
    for request_id in ("j-alice", "another-join"):  # replay by key, then by user
        again = await card.ClaimSignupCard(request_id=request_id, campaign_id=C, user_id="alice", include_wallet=True)
        assert not again.newly_granted
        assert again.wallet == first.wallet == await wallet_now(card, "alice")


async def test_writes_without_include_wallet_return_no_wallet(card):
    await card.campaign(C)
    claimed = await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    assert not claimed.HasField("wallet")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    accepted = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code)
    assert accepted.newly_accepted and not accepted.HasField("wallet")


@pytest.mark.parametrize("signed_up_first", [True, False])
async def test_an_accepted_invite_returns_the_invitee_s_wallet_on_first_call_and_replay(card, signed_up_first):
    await card.campaign(C, signup_grant=1, invitee_grant=2)
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    if signed_up_first:
        await card.ClaimSignupCard(request_id="j-bob", campaign_id=C, user_id="bob")
    accepted = await card.AcceptInvite(
        request_id="i-bob", campaign_id=C, invitee_user_id="bob", text=code, include_wallet=True
    )
    assert accepted.newly_accepted and accepted.HasField("wallet")
    wallet = accepted.wallet
    assert wallet == await wallet_now(card, "bob")
    assert wallet.wallet.user_id == "bob" and wallet.wallet.invited_by_user_id == "alice"
    assert wallet.wallet.cards_granted == 2  # topped up to max(signup_grant, invitee_grant)
    assert {c.card_id for c in accepted.invitee_cards} <= {c.card_id for c in wallet.available_cards}
    for request_id in ("i-bob", "i-bob-again"):
        replay = await card.AcceptInvite(
            request_id=request_id, campaign_id=C, invitee_user_id="bob", text=code, include_wallet=True
        )
        assert not replay.newly_accepted and replay.wallet == await wallet_now(card, "bob") == wallet


async def test_a_refused_invite_fails_as_before_with_or_without_include_wallet(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    own = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(campaign_id=C, invitee_user_id="alice", text=own, include_wallet=True)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err.value)["reason"] == "SELF_INVITE"


async def test_concurrent_joins_each_get_a_wallet_holding_their_own_committed_cards(card):
    await card.campaign(C, signup_grant=2, invitee_grant=2)
    code = (await card.GetInviteCode(campaign_id=C, user_id="host")).invite_code.pass_phrase_text
    users = [f"u{n}" for n in range(60)]

    async def join(user: str, attempt: int):
        if int(user[1:]) % 2:
            return await card.AcceptInvite(
                request_id=f"i-{user}-{attempt}", campaign_id=C, invitee_user_id=user, text=code, include_wallet=True
            )
        return await card.ClaimSignupCard(
            request_id=f"j-{user}-{attempt}", campaign_id=C, user_id=user, include_wallet=True
        )

    # Every user joins three times at once (a client retrying while the first call is in flight).
    replies = await asyncio.gather(*(join(u, a) for u in users for a in range(3)))
    for user, reply in zip((u for u in users for _ in range(3)), replies):
        w = reply.wallet
        assert w.wallet.user_id == user and w.wallet.cards_granted == 2
        assert len(w.available_cards) == 2 and all(c.user_id == user for c in w.available_cards)
        assert w == await wallet_now(card, user)
