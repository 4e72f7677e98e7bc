"""Beacon relays that answer garbage, and EnterDraw request ids reused across days."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timezone

import grpc
import pytest

from miandan.lottery.v1 import lottery_service_pb2 as pb
from services.common.clock import FakeClock
from services.common.errors import AlreadyExists, error_details
from services.lottery import model
from services.lottery.beacon import DrandBeacon

from .conftest import CAMPAIGN
from .test_lottery_beacon_fetch import DAY, QUICKNET, RANDOMNESS, ROUND, SIGNATURE, Relay, a_day_bound_to_the_round


@contextlib.asynccontextmanager
async def raw_relay(answer: bytes):
    """A loopback "relay" that answers every request with `answer`, raw bytes on the socket."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def http_200(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


# What a relay that is not quite one may answer: something that is not HTTP at all (a proxy, a
# captive portal, a port taken by another program), and a 200 whose JSON nests too deep for the
# decoder (RecursionError, which is no ValueError).
BROKEN_RELAYS = {
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "JSON nested too deep": http_200(b"[" * 60_000),
}


class TestARelayThatIsNotQuiteOne:
    @pytest.fixture
    def clock(self):
        # The morning of the day the beacon tests bind (test_lottery_beacon_fetch.py).
        return FakeClock(datetime(2023, 9, 15, 2, 0, tzinfo=timezone.utc))

    async def test_a_relay_that_answers_garbage_is_passed_over_for_the_next(self, tmp_path, fake_card_server, clock):
        good = Relay({"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE})
        lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, good)
        try:
            clock.advance(hours=9, seconds=10)  # past the cut-off and the round's time
            for why, answer in BROKEN_RELAYS.items():
                async with raw_relay(answer) as broken:
                    # The broken relay first: the next one has the signed value.
                    lot.server.lottery.beacon = DrandBeacon([broken, good.url])
                    value = await lot.server.lottery.fetched_beacon_value(
                        await lot.server.lottery.store.get_draw(CAMPAIGN, DAY)
                    )
                    assert value == RANDOMNESS, why
            async with raw_relay(BROKEN_RELAYS["not HTTP"]) as broken:
                lot.server.lottery.beacon = DrandBeacon([broken, good.url])
                assert (await lot.server.scheduler.tick())["drawn"] == [f"{CAMPAIGN}/{DAY}"]
            assert good.paths[-1] == f"/{QUICKNET.chain_hash}/public/{ROUND}"
        finally:
            await lot.stop()
            good.close()

    async def test_an_admin_run_draw_with_only_a_broken_relay_is_unavailable_not_internal(self, tmp_path, fake_card_server, clock):
        good = Relay({"round": ROUND, "randomness": RANDOMNESS, "signature": SIGNATURE})
        lot = await a_day_bound_to_the_round(tmp_path, fake_card_server, clock, good)
        try:
            clock.advance(hours=9, seconds=10)
            for why, answer in BROKEN_RELAYS.items():
                async with raw_relay(answer) as broken:
                    lot.server.lottery.beacon = DrandBeacon([broken])
                    try:
                        await lot.stub.RunDraw(pb.RunDrawRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lot.admin)
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE, (why, exc.code(), exc.details())
                    else:
                        raise AssertionError(f"{why}: drawn without a verified value")
        finally:
            await lot.stop()
            good.close()


# --- EnterDraw's request_id -------------------------------------------------------------------


async def enter(lot, user, day, rid):
    return await lot.stub.EnterDraw(pb.EnterDrawRequest(request_id=rid, campaign_id=CAMPAIGN, user_id=user, day=day), metadata=lot.md)


async def test_an_enter_draw_request_id_reused_for_another_day_is_refused(lottery, card_server, clock):
    await card_server.invite("bob", 3)
    first = await enter(lottery, "bob", "2026-01-28", "enter-1")
    assert first.newly_entered
    clock.advance(days=1)  # 2026-01-29, 10:00 in Shanghai: that day's entries are open
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await enter(lottery, "bob", "2026-01-29", "enter-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(err.value)["reason"] == "REQUEST_ID_REUSED"
    mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="bob"), metadata=lottery.md)
    assert [e.day for e in mine.entries] == ["2026-01-28"]
    # The key is the user's own: another user may pick the same one, and a fresh key enters.
    await card_server.invite("carol", 3)
    assert (await enter(lottery, "carol", "2026-01-29", "enter-1")).newly_entered
    assert (await enter(lottery, "bob", "2026-01-29", "enter-2")).newly_entered


async def test_a_retry_of_today_after_midnight_is_answered_with_the_entry_it_made(lottery, card_server, clock):
    await card_server.invite("dave", 3)
    first = await enter(lottery, "dave", "", "enter-today")
    clock.advance(days=1)
    again = await enter(lottery, "dave", "", "enter-today")
    assert not again.newly_entered and again.entry == first.entry
    mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id="dave"), metadata=lottery.md)
    assert [e.day for e in mine.entries] == ["2026-01-28"]


async def test_the_store_refuses_a_request_id_another_day_took_meanwhile(lottery, card_server, clock):
    # Two EnterDraw calls under one key, each past the handler's look-up before the other wrote
    # (one per campaign, or a slow card call across midnight): the write itself must refuse.
    lot = lottery.server.lottery
    campaign = await lot.cards.get_campaign(CAMPAIGN, timeout=5)
    now = lot.now_ms()
    today = model.today(clock.now(), campaign.zone)
    await lot.store.enter(lot.fresh_draw(campaign, today, now), "fay", now, "enter-y")
    other = model.new_draw(replace(campaign, campaign_id="autumn-2026"), today, lot.settings.cutoff, now)
    with pytest.raises(AlreadyExists):
        await lot.store.enter(other, "fay", now, "enter-y")
    assert await lot.store.user_entries("autumn-2026", "fay", "", 10) == []
