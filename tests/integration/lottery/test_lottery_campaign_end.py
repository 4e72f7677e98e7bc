"""A campaign whose window ends in the middle of a day: its last day's draw closes when the
campaign does, not at the usual cut-off hours later."""
from __future__ import annotations

from datetime import datetime, timezone

import grpc
import pytest

from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2 as pb
from services.common.clock import to_ms
from services.common.errors import error_details

from .conftest import CAMPAIGN, DAY, Lottery

# Noon in Shanghai on DAY; the conftest's clock starts at 10:00 there, the cut-off is 20:00.
CAMPAIGN_END = datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc)


@pytest.fixture
async def lottery_of_a_campaign_ending_at_noon(tmp_path, fake_card_server, clock, draw_settings):
    fake_card_server.fake.campaigns[CAMPAIGN].end_time.FromDatetime(CAMPAIGN_END)
    lot = Lottery(tmp_path / "lottery", fake_card_server.port, clock, draw_settings)
    await lot.start()
    try:
        yield lot, fake_card_server
    finally:
        await lot.stop()


async def enter(lot, user):
    return await lot.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=user, day=DAY), metadata=lot.md)


async def test_entries_of_the_last_day_close_when_the_campaign_ends(lottery_of_a_campaign_ending_at_noon, clock):
    lot, card = lottery_of_a_campaign_ending_at_noon
    await card.invite("early", 3)
    await card.invite("late", 3)
    entered = await enter(lot, "early")
    assert entered.draw.cutoff_time.ToMilliseconds() == to_ms(CAMPAIGN_END)
    clock.advance(hours=5)  # 15:00 in Shanghai: the campaign has been over for three hours
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await enter(lot, "late")
    assert (err.value.code(), error_details(err.value)["reason"]) == (grpc.StatusCode.FAILED_PRECONDITION, "ENTRIES_CLOSED")


async def test_the_last_day_is_drawn_when_the_campaign_ends(lottery_of_a_campaign_ending_at_noon, clock):
    lot, card = lottery_of_a_campaign_ending_at_noon
    await card.invite("early", 3)
    await enter(lot, "early")
    clock.advance(hours=2)  # noon: the campaign is over
    assert (await lot.server.scheduler.tick())["drawn"] == [f"{CAMPAIGN}/{DAY}"]
    drawn = (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.md)).draw
    assert drawn.status == lottery_pb2.DRAW_STATUS_DRAWN and list(drawn.winners) == ["early"]


async def test_a_last_day_nobody_committed_is_not_held_once_the_campaign_is_over(tmp_path, fake_card_server, clock, draw_settings):
    fake_card_server.fake.campaigns[CAMPAIGN].end_time.FromDatetime(CAMPAIGN_END)
    clock.advance(hours=3)  # 13:00 in Shanghai: the service starts after the campaign ended
    lot = Lottery(tmp_path / "lottery", fake_card_server.port, clock, draw_settings)
    await lot.start()
    try:
        draw = (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.md)).draw
        assert (draw.status, draw.commitment) == (lottery_pb2.DRAW_STATUS_NOT_HELD, "")
    finally:
        await lot.stop()
