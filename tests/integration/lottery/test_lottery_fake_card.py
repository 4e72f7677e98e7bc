"""What the lottery sends the card service, observed on a fake CardService servicer."""
from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.common.auth import INTERNAL_TOKEN_KEY
from services.common.errors import error_details

CAMPAIGN = "spring-2026"
DAY = "2026-01-28"


async def test_invites_are_counted_before_the_cutoff_with_the_internal_credential(lottery_on_fake_card):
    lot, card = lottery_on_fake_card
    await card.invite("u", 3)
    resp = await lot.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="u", day=DAY), metadata=lot.md)
    request, metadata = card.fake.last_stats
    assert request.user_id == "u" and request.campaign_id == CAMPAIGN
    assert request.before_time.ToDatetime(tzinfo=timezone.utc) == datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc)
    assert request.before_time == resp.draw.cutoff_time
    assert (INTERNAL_TOKEN_KEY, lot.settings.internal_token) in metadata


async def test_invites_dated_after_the_cutoff_do_not_qualify(lottery_on_fake_card, clock):
    lot, card = lottery_on_fake_card
    # Two invites before the cut-off and one (clock skew, late replication...) dated after it.
    card.fake.invite("v", 2, int(datetime(2026, 1, 28, 1, 0, tzinfo=timezone.utc).timestamp() * 1000))
    card.fake.invite("v", 1, int(datetime(2026, 1, 28, 13, 0, tzinfo=timezone.utc).timestamp() * 1000))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await lot.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="v", day=DAY), metadata=lot.md)
    assert error_details(err.value)["metadata"] == {"invited_count": "2", "threshold": "3"}
