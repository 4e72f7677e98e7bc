"""A whole lottery day through the real gateway, card and lottery servers (in-process, real
SQLite on tmp_path, port 0) on one FakeClock: invite three new users, enter before the cut-off,
move time past it, the operator runs the draw, and the gateway recomputes and verifies it."""
from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import json_format

from miandan.card.v1 import card_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2
from services.common.errors import error_details
from services.lottery import verify

pytestmark = pytest.mark.timeout(60)

@pytest.fixture
async def day(tmp_path, card_lottery_gateway):
    async with card_lottery_gateway(tmp_path, card_pb2.CampaignRules(budget_fen=10**12)) as env:
        yield env


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


async def test_any_user_pages_a_drawn_days_entrants_and_the_checker_verifies_them_through_the_gateway(day, monkeypatch, capsys, tmp_path):
    g = day.gateway
    host = "laowang"
    phrase = (await g.Join(gw.JoinRequest(request_id="j"), metadata=day.auth(host), timeout=10)).wallet.wallet.pass_phrase_text
    for i in range(3):
        await g.Join(gw.JoinRequest(request_id="j", pass_phrase_text=phrase), metadata=day.auth(f"friend{i}"), timeout=10)
    await g.EnterLottery(gw.EnterLotteryRequest(request_id="e1"), metadata=day.auth(host), timeout=10)
    outsider = day.auth("journalist")  # joined nothing, entered nothing
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await g.VerifyDraw(gw.VerifyDrawRequest(day="2026-01-28"), metadata=outsider, timeout=10)
    assert (info.value.code(), error_details(info.value)["reason"]) == (grpc.StatusCode.FAILED_PRECONDITION, "DRAW_NOT_DRAWN")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await g.VerifyDraw(gw.VerifyDrawRequest(), metadata=outsider, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error_details(info.value)["violations"][0][0] == "day"
    assert error_details(info.value)["reason"] == "MISSING_FIELD"  # as the lottery itself says it

    day.clock.advance(hours=11)
    await day.lottery.RunDraw(
        lottery_service_pb2.RunDrawRequest(request_id="run", campaign_id="spring-2026", day="2026-01-28"),
        metadata=day.admin, timeout=10,
    )
    page = (await g.VerifyDraw(gw.VerifyDrawRequest(day="2026-01-28", page_size=1), metadata=outsider, timeout=10)).verification
    assert list(page.entrants) == [host] and page.seed and list(page.winners) == [host]
    assert page.entrant_count == 1 and not page.next_page_token

    # The stdlib checker, fed by the public gateway with the outsider's token.
    monkeypatch.setenv("MIANDAN_USER_TOKEN", outsider[0][1].removeprefix("Bearer "))
    status = await asyncio.to_thread(verify.main, ["--gateway", day.gateway_addr, "--day", "2026-01-28"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "VERIFIED" in out

    # The same page as `grpcurl ... GatewayService/VerifyDraw` prints it, saved and checked offline.
    saved = tmp_path / "verify-draw.json"
    saved.write_text(json_format.MessageToJson(
        await g.VerifyDraw(gw.VerifyDrawRequest(day="2026-01-28"), metadata=outsider, timeout=10)
    ), encoding="utf-8")
    assert verify.main(["--file", str(saved)]) == 0, capsys.readouterr().out


async def test_a_past_day_that_was_never_committed_is_not_promised_a_draw(day):
    # The day before the servers first started: in the campaign, past its cut-off, never
    # committed (nothing was running), and it can never be any more.
    results = (await day.gateway.GetDrawResults(
        gw.GetDrawResultsRequest(day="2026-01-27"), metadata=day.auth("laowang"), timeout=10
    )).results
    assert results.draw.status == lottery_pb2.DRAW_STATUS_NOT_HELD and not results.draw.commitment
    assert not results.verified and "no draw was held" in results.verification_note
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await day.lottery.CommitDraw(
            lottery_service_pb2.CommitDrawRequest(campaign_id="spring-2026", day="2026-01-27"), metadata=day.admin, timeout=10
        )
    assert error_details(info.value)["reason"] == "ENTRIES_CLOSED"
    today = (await day.gateway.GetDrawResults(gw.GetDrawResultsRequest(), metadata=day.auth("laowang"), timeout=10)).results
    assert "verifiable once drawn" in today.verification_note  # an open day is still promised its draw
