"""The audit's campaign-wide listings (ListCampaignMembers, ListCampaignInvites): every member and
every invite in pages, with the same counters and invites the per-user RPCs show, admin only."""
import asyncio

import grpc
import pytest

from miandan.card.v1 import card_service_pb2 as pb
from services.common.errors import error_details

C = "spring"


async def fails(call, code, reason=None):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    d = error_details(err.value)
    assert err.value.code() == code, d
    if reason is not None:
        assert d["reason"] == reason, d
    return d


async def join(card, user, inviter=None):
    await card.ClaimSignupCard(campaign_id=C, user_id=user)
    if inviter is not None:
        code = (await card.GetInviteCode(campaign_id=C, user_id=inviter)).invite_code
        await card.AcceptInvite(campaign_id=C, invitee_user_id=user, text=code.pass_phrase_text)


async def all_pages(call, items, **fields):
    page = await call(**fields)
    got = list(getattr(page, items))
    tokens = 0
    while page.next_page_token:
        tokens += 1
        page = await call(page_token=page.next_page_token, **fields)
        got += list(getattr(page, items))
    return got, tokens


async def test_members_are_listed_in_pages_with_the_counters_their_wallets_show(card):
    await card.campaign(C, per_user_card_cap=3)
    await join(card, "alice")
    # Four invitees: alice reaches the cap of 3 cards on the second, the later invites still count.
    for u in ("bob", "carol", "dave", "erin"):
        await join(card, u, inviter="alice")
    await card.GetInviteCode(campaign_id=C, user_id="zed")  # asked for a code, never joined
    members, tokens = await all_pages(card.ListCampaignMembers, "members", campaign_id=C, page_size=2)
    assert tokens >= 2
    users = [m.user_id for m in members]
    assert users == sorted(users) and len(set(users)) == len(users)
    for m in members:
        wallet = (await card.GetWallet(campaign_id=C, user_id=m.user_id)).wallet
        assert (m.cards_granted, m.invites_made) == (wallet.cards_granted, wallet.invites_made), m.user_id
    by_user = {m.user_id: m for m in members}
    assert {"alice", "bob", "carol", "dave", "erin"} <= set(by_user)
    assert by_user["alice"].invites_made == 4 and by_user["alice"].cards_granted == 3


async def test_invites_are_listed_in_pages_once_each_as_the_inviters_stats_list_them(card):
    await card.campaign(C)
    await join(card, "alice")
    await join(card, "bob")
    for i in range(5):
        await join(card, f"a{i}", inviter="alice")
    for i in range(2):
        await join(card, f"b{i}", inviter="bob")
    invites, _ = await all_pages(card.ListCampaignInvites, "invites", campaign_id=C, page_size=3)
    assert [i.invitee_user_id for i in invites] == sorted(["a0", "a1", "a2", "a3", "a4", "b0", "b1"])
    for inviter in ("alice", "bob"):
        stats = await card.GetInviteStats(campaign_id=C, user_id=inviter, page_size=100)
        assert [i for i in invites if i.inviter_user_id == inviter] == sorted(stats.invites, key=lambda i: i.invitee_user_id)


async def test_members_joining_while_an_audit_pages_are_each_listed_once(card):
    """Keyset pages: a member added behind the cursor is not repeated and none is skipped."""
    await card.campaign(C)
    await asyncio.gather(*(join(card, f"u{i:03d}") for i in range(0, 60, 2)))
    page = await card.ListCampaignMembers(campaign_id=C, page_size=7)
    seen = [m.user_id for m in page.members]
    late = asyncio.gather(*(join(card, f"u{i:03d}") for i in range(1, 60, 2)))
    while page.next_page_token:
        page = await card.ListCampaignMembers(campaign_id=C, page_size=7, page_token=page.next_page_token)
        seen += [m.user_id for m in page.members]
    await late
    assert len(seen) == len(set(seen)) and seen == sorted(seen)
    assert {f"u{i:03d}" for i in range(0, 60, 2)} <= set(seen)


async def test_an_empty_campaign_lists_nothing_and_an_unknown_one_is_not_found(card):
    await card.campaign(C)
    assert list((await card.ListCampaignMembers(campaign_id=C)).members) == []
    assert (await card.ListCampaignInvites(campaign_id=C)).next_page_token == ""
    await fails(card.ListCampaignMembers(campaign_id="nope"), grpc.StatusCode.NOT_FOUND, "CAMPAIGN_NOT_FOUND")
    await fails(card.ListCampaignInvites(campaign_id="nope"), grpc.StatusCode.NOT_FOUND, "CAMPAIGN_NOT_FOUND")


@pytest.mark.parametrize("rpc", ["ListCampaignMembers", "ListCampaignInvites"])
async def test_bad_page_sizes_and_tokens_are_invalid_arguments(card, rpc):
    await card.campaign(C)
    for u in ("alice", "bob", "carol"):
        await join(card, u, inviter=None if u == "alice" else "alice")
    call = getattr(card, rpc)
    await fails(call(campaign_id=C, page_size=1001), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(call(campaign_id=C, page_size=-1), grpc.StatusCode.INVALID_ARGUMENT)
    for token in ("!!", "bm9wZQ", "not-a-token"):
        await fails(call(campaign_id=C, page_token=token), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    # A token of the other listing (both are keyed by a user id) is not taken as a cursor.
    other = "ListCampaignInvites" if rpc == "ListCampaignMembers" else "ListCampaignMembers"
    token = (await getattr(card, other)(campaign_id=C, page_size=1)).next_page_token
    assert token
    await fails(call(campaign_id=C, page_token=token), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


@pytest.mark.parametrize("rpc", ["ListCampaignMembers", "ListCampaignInvites"])
async def test_the_listings_need_the_admin_credential(card, rpc):
    await card.campaign(C)
    request = getattr(pb, f"{rpc}Request")(campaign_id=C)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(card.stub, rpc)(request, metadata=card.md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
