"""A whole lottery day through the real gateway, card and lottery servers (in-process, real
SQLite on tmp_path, port 0) on one FakeClock: invite three new users, enter before the cut-off,
move time past it, the operator runs the draw, and the gateway recomputes and verifies it."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(60)

SHANGHAI = timezone(timedelta(hours=8))


@pytest.fixture
async def day(tmp_path):
    from services.card.wiring import build as build_card
    from services.lottery.wiring import build as build_lottery, draw_settings_from_env

    from gateway.wiring import build as build_gateway

    clock = FakeClock(datetime(2026, 1, 28, 10, 0, tzinfo=SHANGHAI))
    base = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None, data_dir=tmp_path
    )
    servers = []
    card = await build_card(dataclasses.replace(base, service="card"), clock=clock)
    card_port = await card.start()
    servers.append(card)
    lottery = await build_lottery(
        dataclasses.replace(base, service="lottery", card_addr=f"127.0.0.1:{card_port}"),
        clock=clock,
        draw_settings=draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": "spring-2026", "MIANDAN_LOTTERY_TICK_SECONDS": "3600"}),
    )
    lottery_port = await lottery.start()
    servers.append(lottery)
    settings = dataclasses.replace(
        base, card_addr=f"127.0.0.1:{card_port}", lottery_addr=f"127.0.0.1:{lottery_port}",
        # Unused by this test; a closed port makes any stray call fail fast.
        catalog_addr="127.0.0.1:1", order_addr="127.0.0.1:1",
    )
    gateway = await build_gateway(settings, clock=clock, campaign_id="spring-2026")
    gateway_port = await gateway.start()
    servers.append(gateway)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in (card_port, lottery_port, gateway_port)]
    admin = internal_metadata(settings, admin=True)
    cards = card_service_pb2_grpc.CardServiceStub(channels[0])
    create = card_service_pb2.CreateCampaignRequest(
        request_id="c1", campaign_id="spring-2026", name="春节30亿免单", rules=card_pb2.CampaignRules(budget_fen=10**12)
    )
    create.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=SHANGHAI))
    create.end_time.FromDatetime(datetime(2028, 1, 1, tzinfo=SHANGHAI))
    await cards.CreateCampaign(create, metadata=admin, timeout=10)

    class Day:
        pass

    d = Day()
    d.clock, d.settings, d.admin = clock, settings, admin
    d.gateway = gateway_service_pb2_grpc.GatewayServiceStub(channels[2])
    d.lottery = lottery_service_pb2_grpc.LotteryServiceStub(channels[1])

    def auth(user: str) -> tuple:
        from gateway.token import mint

        return (("authorization", f"Bearer {mint(settings, user, clock=clock, ttl=86400)}"),)

    d.auth = auth
    yield d
    for channel in channels:
        await channel.close()
    for server in reversed(servers):
        await server.stop(0)


async def test_three_invites_an_entry_a_draw_and_a_verified_result(day):
    g = day.gateway
    host = "laowang"
    joined = await g.Join(gw.JoinRequest(request_id="j"), metadata=day.auth(host), timeout=10)
    phrase = joined.wallet.wallet.pass_phrase_text
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await g.EnterLottery(gw.EnterLotteryRequest(request_id="e0"), metadata=day.auth(host), timeout=10)
    assert error_details(info.value)["reason"] == "NOT_QUALIFIED"
    for i in range(3):
        friend = await g.Join(gw.JoinRequest(request_id="j", pass_phrase_text=phrase), metadata=day.auth(f"friend{i}"), timeout=10)
        assert friend.invite_accepted
    wallet = (await g.GetWallet(gw.GetWalletRequest(), metadata=day.auth(host), timeout=10)).wallet
    assert (wallet.lottery.day, wallet.lottery.invites, wallet.lottery.qualified) == ("2026-01-28", 3, True)
    assert not wallet.lottery.entered_today

    entered = await g.EnterLottery(gw.EnterLotteryRequest(request_id="e1"), metadata=day.auth(host), timeout=10)
    assert entered.entry.user_id == host and entered.draw.day == "2026-01-28" and entered.draw.commitment
    again = await g.EnterLottery(gw.EnterLotteryRequest(request_id="e2"), metadata=day.auth(host), timeout=10)
    assert again.entry.entry_time == entered.entry.entry_time  # one entry per user and day
    wallet = (await g.GetWallet(gw.GetWalletRequest(), metadata=day.auth(host), timeout=10)).wallet
    assert wallet.lottery.entered_today

    before = (await g.GetDrawResults(gw.GetDrawResultsRequest(), metadata=day.auth(host), timeout=10)).results
    assert before.draw.status == lottery_pb2.DRAW_STATUS_OPEN and not before.verified and not before.draw.seed

    day.clock.advance(hours=11)  # past the 20:00 cut-off
    run = await day.lottery.RunDraw(
        lottery_service_pb2.RunDrawRequest(request_id="run", campaign_id="spring-2026", day="2026-01-28"),
        metadata=day.admin, timeout=10,
    )
    assert run.draw.status == lottery_pb2.DRAW_STATUS_DRAWN and list(run.draw.winners) == [host]

    results = (await g.GetDrawResults(gw.GetDrawResultsRequest(day="2026-01-28"), metadata=day.auth(host), timeout=10)).results
    assert results.verified, results.verification_note
    assert results.caller_won and results.draw.commitment == entered.draw.commitment
    other = (await g.GetDrawResults(gw.GetDrawResultsRequest(day="2026-01-28"), metadata=day.auth("friend0"), timeout=10)).results
    assert other.verified and not other.caller_won
