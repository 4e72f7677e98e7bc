"""The gateway with real card and lottery servers in this process (real SQLite on tmp_path,
port 0, one FakeClock), and the campaign created: what the Join and lottery-day tests share."""
from __future__ import annotations

import dataclasses
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from miandan.card.v1 import card_service_pb2, card_service_pb2_grpc
from miandan.gateway.v1 import gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings

SHANGHAI = timezone(timedelta(hours=8))


@asynccontextmanager
async def _card_lottery_gateway(tmp_path: Any, rules: Any, order_addr: str = "127.0.0.1:1") -> AsyncIterator[SimpleNamespace]:
    """Yields clock, settings, admin (metadata), card / lottery / gateway stubs and auth(user),
    with campaign spring-2026 created under `rules` (a card_pb2.CampaignRules). order_addr: the
    order service the gateway calls (default a closed port)."""
    from gateway.token import mint
    from gateway.wiring import build as build_gateway
    from services.card.wiring import build as build_card
    from services.lottery.wiring import build as build_lottery, draw_settings_from_env

    clock = FakeClock(datetime(2026, 1, 28, 10, 0, tzinfo=SHANGHAI))
    base = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None, data_dir=tmp_path
    )
    servers: list[Any] = []
    channels: list[grpc.aio.Channel] = []
    try:
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
            # Unused by these tests; a closed port makes any stray call fail fast.
            catalog_addr="127.0.0.1:1", order_addr=order_addr,
        )
        gateway = await build_gateway(settings, clock=clock, campaign_id="spring-2026")
        gateway_port = await gateway.start()
        servers.append(gateway)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in (card_port, lottery_port, gateway_port)]
        admin = internal_metadata(settings, admin=True)
        cards = card_service_pb2_grpc.CardServiceStub(channels[0])
        create = card_service_pb2.CreateCampaignRequest(
            request_id="c1", campaign_id="spring-2026", name="春节30亿免单", rules=rules
        )
        create.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=SHANGHAI))
        create.end_time.FromDatetime(datetime(2028, 1, 1, tzinfo=SHANGHAI))
        await cards.CreateCampaign(create, metadata=admin, timeout=10)

        def auth(user: str) -> tuple:
            return (("authorization", f"Bearer {mint(settings, user, clock=clock, ttl=86400)}"),)

        yield SimpleNamespace(
            clock=clock, settings=settings, admin=admin, card=cards, auth=auth, gateway_addr=f"127.0.0.1:{gateway_port}",
            lottery=lottery_service_pb2_grpc.LotteryServiceStub(channels[1]),
            gateway=gateway_service_pb2_grpc.GatewayServiceStub(channels[2]),
        )
    finally:
        for channel in channels:
            await channel.close()
        for server in reversed(servers):
            await server.stop(0)


@pytest.fixture
def card_lottery_gateway():
    """`async with card_lottery_gateway(tmp_path, rules) as env:` (see _card_lottery_gateway)."""
    return _card_lottery_gateway


class CardCalls:
    """RPCs the card server answered, by method, read from this process's Prometheus registry
    (the in-process servers share it): what a Join costs the card service."""

    @staticmethod
    def snapshot() -> dict[str, float]:
        counts: dict[str, float] = {}
        for metric in REGISTRY.collect():
            for s in metric.samples:
                if s.name == "miandan_rpc_calls_total" and s.labels.get("service") == "card":
                    counts[s.labels["method"]] = counts.get(s.labels["method"], 0) + s.value
        return counts

    @classmethod
    def since(cls, before: dict[str, float]) -> dict[str, int]:
        now = cls.snapshot()
        return {m: int(v - before.get(m, 0)) for m, v in now.items() if v - before.get(m, 0)}


@pytest.fixture
def card_calls() -> type[CardCalls]:
    return CardCalls
