"""Every lottery listing's page token names its listing: VerifyDraw and ListDrawEntries both page by
a user id, ListMyEntries and ListDraws by a day, and a token of another listing is refused
INVALID_PAGE_TOKEN, not followed as a position in this one. Tokens handed out before they
carried the name (a bare user id or day) still page on."""
from __future__ import annotations

import base64
from datetime import timedelta

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.common.errors import error_details

CAMPAIGN = "spring-2026"
DAY, NEXT_DAY = "2026-01-28", "2026-01-29"


def requests(day=DAY):
    """Each listing's request at page_size 1, and the credential it needs."""
    return {
        "VerifyDraw": (pb.VerifyDrawRequest(campaign_id=CAMPAIGN, day=day, page_size=1), "md"),
        "ListDrawEntries": (pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=day, page_size=1), "admin"),
        "ListMyEntries": (pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="alice", page_size=1), "md"),
        "ListDraws": (pb.ListDrawsRequest(campaign_id=CAMPAIGN, page_size=1), "md"),
    }


async def call(lot, rpc, token=""):
    request, credential = requests()[rpc]
    request.page_token = token
    return await getattr(lot.stub, rpc)(request, metadata=getattr(lot, credential))


def untagged(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


@pytest.fixture
async def two_days(lottery, card_server, clock):
    """alice and bob entered a drawn day and the day after it."""
    for day in (DAY, NEXT_DAY):
        await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=day, winner_count=1), metadata=lottery.admin)
        for user in ("alice", "bob"):
            await card_server.invite(user, 3)
            await lottery.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=user, day=day), metadata=lottery.md)
        if day == DAY:
            clock.advance(timedelta(hours=10, seconds=5).total_seconds())  # past 20:00 Shanghai
            await lottery.stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin)
            clock.advance(timedelta(hours=14).total_seconds())  # 10:00 of the next day
    return lottery


@pytest.mark.parametrize("rpc", sorted(requests()))
async def test_a_token_of_another_listing_is_refused(two_days, rpc):
    for other in sorted(set(requests()) - {rpc}):
        token = (await call(two_days, other)).next_page_token
        assert token, other
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(two_days, rpc, token)
        d = error_details(err.value)
        assert (d["code"], d["reason"]) == ("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"), (other, d)


@pytest.mark.parametrize("rpc, items, key", [
    ("VerifyDraw", "entrants", lambda e: e),
    ("ListDrawEntries", "entries", lambda e: e.user_id),
    ("ListMyEntries", "entries", lambda e: e.day),
    ("ListDraws", "draws", lambda d: d.day),
])
async def test_each_listing_pages_on_with_its_own_token_and_with_one_from_before_tokens_were_named(two_days, rpc, items, key):
    first = await call(two_days, rpc)
    second = await call(two_days, rpc, first.next_page_token)
    keys = [key(x) for x in getattr(first, items)] + [key(x) for x in getattr(second, items)]
    assert len(keys) == 2 and len(set(keys)) == 2 and not second.next_page_token
    if rpc != "ListDrawEntries":  # new with its named tokens: none were handed out bare
        legacy = await call(two_days, rpc, untagged(keys[0]))
        assert [key(x) for x in getattr(legacy, items)] == keys[1:]
