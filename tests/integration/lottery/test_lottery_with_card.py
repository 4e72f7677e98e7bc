"""The lottery against the REAL card service (services/card/wiring.build), both on one FakeClock:
qualification is whatever the card service's invites say, counted before the day's cut-off."""
from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cpb, card_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2 as pb, lottery_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import error_details
from services.lottery.model import DrawSettings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("services.card.wiring") is None, reason="the card service's wiring does not exist yet"
)

CAMPAIGN = "lottery-it"
DAY = "2026-01-28"


@pytest.fixture
async def suite(tmp_path):
    from services.card.wiring import build as build_card
    from services.lottery.wiring import build as build_lottery

    clock = FakeClock(datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc))  # 10:00 Shanghai
    card_settings = Settings(service="card", port=0, data_dir=tmp_path / "card", log_calls=False, grace_seconds=1)
    card = await build_card(card_settings, clock=clock)
    card_port = await card.start()
    lot_settings = Settings(
        service="lottery", port=0, data_dir=tmp_path / "lottery", card_addr=f"127.0.0.1:{card_port}",
        log_calls=False, grace_seconds=1,
    )
    lottery = await build_lottery(lot_settings, clock=clock, draw_settings=DrawSettings(campaigns=(CAMPAIGN,), tick_seconds=3600))
    lot_port = await lottery.start()
    card_ch = grpc.aio.insecure_channel(f"127.0.0.1:{card_port}")
    lot_ch = grpc.aio.insecure_channel(f"127.0.0.1:{lot_port}")
    admin = internal_metadata(card_settings, admin=True)
    req = cpb.CreateCampaignRequest(
        request_id="create", campaign_id=CAMPAIGN, name="抽奖测试",
        rules=card_pb2.CampaignRules(budget_fen=10**10, time_zone="Asia/Shanghai", lottery_invite_threshold=3),
    )
    req.start_time.FromDatetime(datetime(2025, 12, 31, 16, 0, tzinfo=timezone.utc))
    req.end_time.FromDatetime(datetime(2027, 12, 31, 16, 0, tzinfo=timezone.utc))
    card_stub = card_service_pb2_grpc.CardServiceStub(card_ch)
    await card_stub.CreateCampaign(req, metadata=admin)
    try:
        yield clock, card_stub, lottery_service_pb2_grpc.LotteryServiceStub(lot_ch), internal_metadata(lot_settings), admin
    finally:
        await lot_ch.close()
        await card_ch.close()
        await lottery.stop(0.5)
        await card.stop(0.5)


async def invite(card_stub, md, inviter: str, invitees: list[str]) -> None:
    code = (await card_stub.GetInviteCode(cpb.GetInviteCodeRequest(campaign_id=CAMPAIGN, user_id=inviter), metadata=md)).invite_code
    for invitee in invitees:
        await card_stub.AcceptInvite(
            cpb.AcceptInviteRequest(request_id=f"{inviter}-{invitee}", campaign_id=CAMPAIGN, invitee_user_id=invitee, text=code.code),
            metadata=md,
        )


async def test_qualification_comes_from_the_real_card_service(suite):
    clock, card_stub, stub, md, _ = suite
    await card_stub.ClaimSignupCard(cpb.ClaimSignupCardRequest(campaign_id=CAMPAIGN, user_id="inviter"), metadata=md)
    await invite(card_stub, md, "inviter", ["n1", "n2"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="inviter", day=DAY), metadata=md)
    info = error_details(err.value)
    assert (info["reason"], info["metadata"].get("invited_count"), info["metadata"].get("threshold")) == ("NOT_QUALIFIED", "2", "3")
    await invite(card_stub, md, "inviter", ["n3"])
    entered = await stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id="inviter", day=DAY), metadata=md)
    assert entered.newly_entered and entered.draw.commitment
    clock.advance(timedelta(hours=10).total_seconds())
    drawn = await stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=internal_metadata(
        Settings(service="lottery"), admin=True
    ))
    assert drawn.draw.status == lottery_pb2.DRAW_STATUS_DRAWN and list(drawn.draw.winners) == ["inviter"]
