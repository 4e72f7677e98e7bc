"""Every card listing's page token names its listing: a token of another listing is refused
INVALID_PAGE_TOKEN instead of being read as a position in this one (ListCards and GetInviteStats
page by the same (time, id) shape, ListCampaigns and ListCampaignCards by one id). Tokens handed
out before they carried the name still page on, so a client paging across an upgrade goes on."""
import base64

import grpc
import pytest

from services.common.errors import error_details

C = "spring"

# Each listing with the fields of a request that has two pages at page_size 1.
LISTINGS = {
    "ListCampaigns": {},
    "ListCards": dict(campaign_id=C, user_id="alice"),
    "GetInviteStats": dict(campaign_id=C, user_id="alice"),
    "ListCampaignCards": dict(campaign_id=C),
    "ListReservations": {},
    "ListCampaignMembers": dict(campaign_id=C),
    "ListCampaignInvites": dict(campaign_id=C),
}
# What each response lists, and the key it pages by.
ITEMS = {
    "ListCampaigns": ("campaigns", lambda c: c.campaign_id),
    "ListCards": ("cards", lambda c: c.card_id),
    "GetInviteStats": ("invites", lambda i: i.invitee_user_id),
    "ListCampaignCards": ("cards", lambda c: c.card_id),
    "ListReservations": ("reservations", lambda r: r.order_id),
    "ListCampaignMembers": ("members", lambda m: m.user_id),
    "ListCampaignInvites": ("invites", lambda i: i.invitee_user_id),
}


def untagged(*parts) -> str:
    """A token as the listings handed them out before they carried their name."""
    return base64.urlsafe_b64encode("\x1f".join(str(p) for p in parts).encode()).decode().rstrip("=")


@pytest.fixture
async def listed(card):
    await card.campaign(C, per_user_card_cap=5)
    await card.campaign("autumn")
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code
    for invitee in ("bob", "carol"):
        await card.AcceptInvite(campaign_id=C, invitee_user_id=invitee, text=code.pass_phrase_text)
    for order in ("o1", "o2"):
        await card.ReserveCard(campaign_id=C, user_id="bob" if order == "o1" else "carol", order_id=order, amount_fen=500)
    return card


async def every_key(card, rpc, **first) -> list[str]:
    items, key = ITEMS[rpc]
    page = await getattr(card, rpc)(page_size=1, **LISTINGS[rpc], **first)
    keys = [key(x) for x in getattr(page, items)]
    while page.next_page_token:
        page = await getattr(card, rpc)(page_size=1, page_token=page.next_page_token, **LISTINGS[rpc])
        keys += [key(x) for x in getattr(page, items)]
    return keys


@pytest.mark.parametrize("rpc", sorted(LISTINGS))
async def test_a_token_of_another_listing_is_refused(listed, rpc):
    for other in sorted(set(LISTINGS) - {rpc}):
        token = (await getattr(listed, other)(page_size=1, **LISTINGS[other])).next_page_token
        assert token, other
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(listed, rpc)(page_size=1, page_token=token, **LISTINGS[rpc])
        d = error_details(err.value)
        assert (d["code"], d["reason"]) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"), (other, d)


@pytest.mark.parametrize("rpc", sorted(LISTINGS))
async def test_each_listing_pages_through_everything_once_with_its_own_tokens(listed, rpc):
    keys = await every_key(listed, rpc)
    assert len(keys) >= 2 and len(set(keys)) == len(keys)


async def test_tokens_handed_out_before_they_were_named_still_page_on(listed):
    cards = (await listed.ListCards(**LISTINGS["ListCards"])).cards
    first = cards[0]
    later = (await listed.ListCards(page_token=untagged(first.expire_time.ToMilliseconds(), first.card_id), **LISTINGS["ListCards"])).cards
    assert [c.card_id for c in later] == [c.card_id for c in cards[1:]]

    invites = (await listed.GetInviteStats(**LISTINGS["GetInviteStats"])).invites
    first_invite = invites[0]
    later_invites = (await listed.GetInviteStats(
        page_token=untagged(first_invite.accept_time.ToMilliseconds(), first_invite.invitee_user_id), **LISTINGS["GetInviteStats"]
    )).invites
    assert [i.invitee_user_id for i in later_invites] == [i.invitee_user_id for i in invites[1:]]

    campaigns = [c.campaign_id for c in (await listed.ListCampaigns()).campaigns]
    assert [c.campaign_id for c in (await listed.ListCampaigns(page_token=untagged(campaigns[0]))).campaigns] == campaigns[1:]

    campaign_cards = [c.card_id for c in (await listed.ListCampaignCards(campaign_id=C)).cards]
    after_first = (await listed.ListCampaignCards(campaign_id=C, page_token=untagged(campaign_cards[0]))).cards
    assert [c.card_id for c in after_first] == campaign_cards[1:]
