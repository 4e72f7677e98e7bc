"""A real card server (wiring.build) on port 0 over SQLite on tmp_path, with a FakeClock."""
import dataclasses
from datetime import datetime, timezone

import grpc
import pytest
from google.protobuf import timestamp_pb2

from miandan.card.v1 import card_pb2, card_service_pb2 as pb, card_service_pb2_grpc
from services.card.wiring import build
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings

START = datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc)


def ts(dt):
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


class CardClient:
    """Stub plus credentials, so tests read as the calls they make."""

    def __init__(self, channel, settings):
        self.stub = card_service_pb2_grpc.CardServiceStub(channel)
        self.md = internal_metadata(settings)
        self.admin_md = internal_metadata(settings, admin=True)

    def __getattr__(self, name):
        method = getattr(self.stub, name)
        admin = name in (
            "CreateCampaign", "SetCampaignBudget", "ListCampaigns", "ListCampaignCards", "GetCardHistory", "ListCampaignMembers",
            "ListCampaignInvites",
        )
        md = self.admin_md if admin else self.md

        def call(request=None, **fields):
            if request is None:
                request = getattr(pb, f"{name}Request")(**fields)
            return method(request, metadata=md, timeout=20)

        return call

    async def campaign(self, campaign_id="spring", start=START, days=30, **rules):
        rules.setdefault("budget_fen", 3_000_000_000 * 100)
        end = datetime.fromtimestamp(start.timestamp() + days * 86400, tz=timezone.utc)
        resp = await self.CreateCampaign(
            campaign_id=campaign_id, name="春节30亿免单", start_time=ts(start), end_time=ts(end),
            rules=card_pb2.CampaignRules(**rules),
        )
        return resp.campaign


@pytest.fixture
def clock():
    return FakeClock(START + (datetime(2026, 1, 28, 12, 30, tzinfo=timezone.utc) - START))


@pytest.fixture
async def card_server(tmp_path, clock):
    settings = dataclasses.replace(
        Settings.from_env("card", {}), port=0, metrics_port=None, data_dir=tmp_path, grace_seconds=1.0,
        # Concurrency tests fire hundreds of calls at once: admission must not shed them here.
        max_concurrency=1000, max_wait_ms=5000, log_calls=False,
    )
    server = await build(settings, clock=clock, sweep_interval_s=3600)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield server, CardClient(channel, settings), settings
    finally:
        await channel.close()
        await server.stop(1.0)


@pytest.fixture
def card(card_server):
    return card_server[1]
