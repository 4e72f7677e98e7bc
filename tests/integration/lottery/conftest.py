"""Fixtures of the lottery integration tests: a card service (the real one when its wiring
exists, else a small fake CardService servicer) and the lottery server from its own wiring."""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from datetime import datetime, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.clock import FakeClock, to_ms
from services.common.config import Settings
from services.lottery.model import DrawSettings
from services.lottery.wiring import build

CAMPAIGN = "spring-2026"
# 10:00 in Shanghai on 2026-01-28: the day's draw is open, cut-off at 20:00 local = 12:00 UTC.
MORNING = datetime(2026, 1, 28, 2, 0, tzinfo=timezone.utc)
DAY = "2026-01-28"


class FakeCardService(card_service_pb2_grpc.CardServiceServicer):
    """GetCampaign and GetInviteStats over in-memory invites, honouring before_time."""

    def __init__(self) -> None:
        self.campaigns = {
            CAMPAIGN: card_pb2.Campaign(
                campaign_id=CAMPAIGN,
                name="春节30亿免单",
                rules=card_pb2.CampaignRules(lottery_invite_threshold=3, time_zone="Asia/Shanghai"),
            )
        }
        c = self.campaigns[CAMPAIGN]
        c.start_time.FromDatetime(datetime(2025, 12, 31, 16, 0, tzinfo=timezone.utc))
        c.end_time.FromDatetime(datetime(2027, 12, 31, 16, 0, tzinfo=timezone.utc))
        self.invites: dict[str, list[int]] = {}  # inviter -> accept times (ms)
        self.stats_calls = 0
        self.seen_metadata: list[tuple] = []

    def invite(self, user_id: str, count: int, at_ms: int) -> None:
        self.invites.setdefault(user_id, []).extend([at_ms] * count)

    async def GetCampaign(self, request, context):
        self.seen_metadata.append(tuple(context.invocation_metadata()))
        c = self.campaigns.get(request.campaign_id)
        if c is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "campaign not found")
        return card_service_pb2.GetCampaignResponse(campaign=c)

    async def GetInviteStats(self, request, context):
        self.stats_calls += 1
        self.last_stats = (request, tuple(context.invocation_metadata()))
        if request.campaign_id not in self.campaigns:
            await context.abort(grpc.StatusCode.NOT_FOUND, "campaign not found")
        times = self.invites.get(request.user_id, [])
        if request.HasField("before_time"):
            before = request.before_time.ToMilliseconds()
            times = [t for t in times if t < before]
        threshold = self.campaigns[request.campaign_id].rules.lottery_invite_threshold
        return card_service_pb2.GetInviteStatsResponse(
            invited_count=len(times), lottery_threshold=threshold, lottery_qualified=len(times) >= threshold
        )


def real_card_wiring_available() -> bool:
    return importlib.util.find_spec("services.card.wiring") is not None


class FakeCard:
    """The card side backed by FakeCardService; invites are dated a minute before now."""

    def __init__(self, fake: FakeCardService, port: int, clock: FakeClock) -> None:
        self.fake, self.port, self.clock, self.real = fake, port, clock, False

    @property
    def stats_calls(self) -> int | None:
        return self.fake.stats_calls

    async def invite(self, user_id: str, count: int) -> None:
        self.fake.invite(user_id, count, to_ms(self.clock.now()) - 60_000)


class RealCard:
    """The card side backed by the real card service (services/card/wiring.build) on the same
    FakeClock; invites are real AcceptInvite calls by fresh users."""

    def __init__(self, server, port: int, stub, md) -> None:
        self.server, self.port, self.stub, self.md, self.real = server, port, stub, md, True
        self._invitees = 0

    stats_calls = None  # not observable from outside the real service

    async def invite(self, user_id: str, count: int) -> None:
        resp = await self.stub.GetInviteCode(card_service_pb2.GetInviteCodeRequest(campaign_id=CAMPAIGN, user_id=user_id), metadata=self.md)
        for _ in range(count):
            self._invitees += 1
            invitee = f"new-{self._invitees}"
            await self.stub.AcceptInvite(
                card_service_pb2.AcceptInviteRequest(
                    request_id=f"accept-{invitee}", campaign_id=CAMPAIGN, invitee_user_id=invitee, text=resp.invite_code.code
                ),
                metadata=self.md,
            )


async def _start_real_card(tmp_path, clock):
    from services.card.wiring import build as build_card

    settings = Settings(service="card", port=0, data_dir=tmp_path / "card", log_calls=False, grace_seconds=1, max_concurrency=400)
    server = await build_card(settings, clock=clock)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = card_service_pb2_grpc.CardServiceStub(channel)
    req = card_service_pb2.CreateCampaignRequest(
        request_id="create", campaign_id=CAMPAIGN, name="春节30亿免单",
        rules=card_pb2.CampaignRules(budget_fen=300_000_000_000, time_zone="Asia/Shanghai", lottery_invite_threshold=3),
    )
    req.start_time.FromDatetime(datetime(2025, 12, 31, 16, 0, tzinfo=timezone.utc))
    req.end_time.FromDatetime(datetime(2027, 12, 31, 16, 0, tzinfo=timezone.utc))
    await stub.CreateCampaign(req, metadata=internal_metadata(settings, admin=True))
    return server, port, channel, stub, internal_metadata(settings)


@pytest.fixture
async def card_server(tmp_path, clock):
    """The real card service when its wiring exists, else the fake servicer."""
    if real_card_wiring_available():
        server, port, channel, stub, md = await _start_real_card(tmp_path, clock)
        try:
            yield RealCard(server, port, stub, md)
        finally:
            await channel.close()
            await server.stop(0.5)
        return
    async with _fake_card_server() as (fake, port):
        yield FakeCard(fake, port, clock)


@pytest.fixture
async def fake_card_server(clock):
    """Always the fake: for behaviour the real service cannot be steered into cheaply."""
    async with _fake_card_server() as (fake, port):
        yield FakeCard(fake, port, clock)


@contextlib.asynccontextmanager
async def _fake_card_server():
    fake = FakeCardService()
    server = grpc.aio.server()
    card_service_pb2_grpc.add_CardServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield fake, port
    finally:
        await server.stop(0)


def lottery_settings(tmp_path, card_port: int) -> Settings:
    # max_concurrency high enough that the 300-call race is decided by the store, not shed.
    return Settings(
        service="lottery", port=0, data_dir=tmp_path, card_addr=f"127.0.0.1:{card_port}",
        max_concurrency=400, max_wait_ms=2000, log_calls=False, grace_seconds=1,
    )


class Lottery:
    """A started lottery server plus a client; restart() reopens it on the same data dir."""

    def __init__(self, tmp_path, card_port: int, clock: FakeClock, draw_settings: DrawSettings, beacon=None) -> None:
        self.settings = lottery_settings(tmp_path, card_port)
        self.clock = clock
        self.draw_settings = draw_settings
        # None: no drand fetching (tests never reach the network); beacon tests pass a local relay.
        self.beacon = beacon
        self.server = None
        self.channel = None

    async def start(self):
        self.server = await build(self.settings, clock=self.clock, draw_settings=self.draw_settings, beacon=self.beacon)
        port = await self.server.start()
        # The background pass at start reads the clock after a card call: moved past a cut-off
        # meanwhile, it would draw the day a test is about to draw itself.
        await asyncio.wait_for(self.server.scheduler.first_pass_done.wait(), 30)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        from miandan.lottery.v1 import lottery_service_pb2_grpc

        self.stub = lottery_service_pb2_grpc.LotteryServiceStub(self.channel)
        self.port = port
        return self

    async def stop(self):
        if self.channel is not None:
            await self.channel.close()
        if self.server is not None:
            await self.server.stop(0.5)
        self.server = self.channel = None

    async def restart(self):
        await self.stop()
        return await self.start()

    @property
    def md(self):
        return internal_metadata(self.settings)

    @property
    def admin(self):
        return internal_metadata(self.settings, admin=True)


@pytest.fixture
def clock():
    return FakeClock(MORNING)


@pytest.fixture
def draw_settings():
    # A tick an hour apart: the background task ticks once at start; tests tick explicitly.
    return DrawSettings(campaigns=(CAMPAIGN,), tick_seconds=3600)


@pytest.fixture
async def lottery_on_fake_card(tmp_path, fake_card_server, clock, draw_settings):
    lot = Lottery(tmp_path / "lottery", fake_card_server.port, clock, draw_settings)
    await lot.start()
    try:
        yield lot, fake_card_server
    finally:
        await lot.stop()


@pytest.fixture
async def lottery(tmp_path, card_server, clock, draw_settings):
    lot = Lottery(tmp_path / "lottery", card_server.port, clock, draw_settings)
    await lot.start()
    try:
        yield lot
    finally:
        await lot.stop()
