"""ListDrawEntries: a day's entries by user id as each user is told them, the audit's one listing
per draw instead of one ListMyEntries per entrant (admin only)."""
from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.common.errors import error_details

CAMPAIGN = "spring-2026"
DAY = "2026-01-28"
CUTOFF_DELTA = timedelta(hours=10)  # 10:00 -> 20:00 Shanghai


async def rpc_error(call) -> dict:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return error_details(err.value)


async def entries(lot, won_only=False, page_size=2, day=DAY):
    got, token, pages = [], "", 0
    while True:
        resp = await lot.stub.ListDrawEntries(
            pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=day, won_only=won_only, page_size=page_size, page_token=token),
            metadata=lot.admin,
        )
        got += list(resp.entries)
        pages += 1
        token = resp.next_page_token
        if not token:
            return got, pages


async def a_day_of(lottery, card_server, users, winners=2):
    await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, winner_count=winners), metadata=lottery.admin)
    for u in users:
        await card_server.invite(u, 3)
        await lottery.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=u, day=DAY), metadata=lottery.md)


async def test_a_days_entries_page_by_user_and_after_the_draw_say_who_won_as_each_user_is_told(lottery, card_server, clock):
    users = ["erin", "alice", "dave", "bob", "carol"]
    await a_day_of(lottery, card_server, users)
    before, pages = await entries(lottery)
    assert pages == 3 and [e.user_id for e in before] == sorted(users)
    assert not any(e.drawn or e.won for e in before)
    assert (await entries(lottery, won_only=True))[0] == []

    clock.advance(CUTOFF_DELTA.total_seconds() + 5)
    drawn = (await lottery.stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)).draw
    after, _ = await entries(lottery)
    assert all(e.drawn for e in after)
    assert sorted(e.user_id for e in after if e.won) == sorted(drawn.winners)
    for e in after:
        mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id=e.user_id), metadata=lottery.md)
        assert [(m.day, m.drawn, m.won) for m in mine.entries] == [(e.day, e.drawn, e.won)]
    won, pages = await entries(lottery, won_only=True, page_size=1)
    assert [e.user_id for e in won] == sorted(drawn.winners) and pages == 2 and all(e.won for e in won)


async def test_an_unknown_day_is_not_found_and_bad_input_is_invalid_argument(lottery, card_server):
    # The scheduler has committed today at start; a later day has no draw yet.
    err = await rpc_error(lottery.stub.ListDrawEntries(pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day="2026-01-29"), metadata=lottery.admin))
    assert (err["code"], err["reason"]) == ("NOT_FOUND", "DRAW_NOT_FOUND")
    await a_day_of(lottery, card_server, ["alice", "bob", "carol"])
    for request, reason in [
        (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day="28/01/2026"), "INVALID_DAY"),
        (pb.ListDrawEntriesRequest(campaign_id="", day=DAY), None),
        (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY, page_size=1001), "INVALID_PAGE_SIZE"),
        (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY, page_size=-1), "INVALID_PAGE_SIZE"),
        (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY, page_token="%%%"), "INVALID_PAGE_TOKEN"),
        # A user id as VerifyDraw's tokens hold it: not a token of this listing.
        (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY, page_token="YWxpY2U"), "INVALID_PAGE_TOKEN"),
    ]:
        err = await rpc_error(lottery.stub.ListDrawEntries(request, metadata=lottery.admin))
        assert err["code"] == "INVALID_ARGUMENT", (request, err)
        if reason:
            assert err["reason"] == reason, (request, err)


async def test_the_listing_needs_the_admin_credential(lottery):
    err = await rpc_error(lottery.stub.ListDrawEntries(pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.md))
    assert (err["code"], err["reason"]) == ("PERMISSION_DENIED", "ADMIN_REQUIRED")
