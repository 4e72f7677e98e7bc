"""ListCampaignMembers lists the users who took part in a campaign, not every user whose wallet
or invite code was asked for (those calls store the user's invite code, on a members row)."""
from miandan.card.v1 import card_service_pb2 as pb

C = "spring"


async def members(card) -> dict[str, pb.CampaignMember]:
    out, token = {}, ""
    while True:
        page = await card.ListCampaignMembers(campaign_id=C, page_size=2, page_token=token)
        out.update({m.user_id: m for m in page.members})
        token = page.next_page_token
        if not token:
            return out


async def accept(card, invitee: str, inviter: str) -> None:
    code = (await card.GetInviteCode(campaign_id=C, user_id=inviter)).invite_code
    await card.AcceptInvite(request_id=f"accept-{invitee}", campaign_id=C, invitee_user_id=invitee, text=code.pass_phrase_text)


async def test_users_who_only_opened_their_wallet_or_asked_for_their_code_are_not_members(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")  # joined by the sign-up grant
    await accept(card, "bob", inviter="alice")  # joined by accepting an invite
    await accept(card, "dave", inviter="ivan")  # ivan never claimed, but his invite made him cards
    for looker in ("aaron", "zed"):
        await card.GetWallet(campaign_id=C, user_id=looker)
    asked = (await card.GetInviteCode(campaign_id=C, user_id="yan")).invite_code.code

    listed = await members(card)

    assert sorted(listed) == ["alice", "bob", "dave", "ivan"]
    assert (listed["ivan"].cards_granted, listed["ivan"].invites_made) == (1, 1)
    for user, m in listed.items():
        wallet = (await card.GetWallet(campaign_id=C, user_id=user)).wallet
        assert (m.cards_granted, m.invites_made) == (wallet.cards_granted, wallet.invites_made), user
    # The code a looker was given stays its code, and joining later makes it a member.
    assert (await card.GetInviteCode(campaign_id=C, user_id="yan")).invite_code.code == asked
    await card.ClaimSignupCard(campaign_id=C, user_id="yan")
    assert (await card.GetInviteCode(campaign_id=C, user_id="yan")).invite_code.code == asked
    assert "yan" in await members(card) and "zed" not in await members(card)
