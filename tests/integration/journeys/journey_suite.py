"""The whole suite in this process for user journeys: card, catalog, order, lottery and the
gateway (their wiring.build, port 0, real SQLite on one data directory), every one on the same
FakeClock, a campaign open all year and one store open around the clock selling a 15-yuan latte.
The gateway paces no user (the journeys play many calls per account, as the e2e suites do)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, AsyncIterator

import grpc

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2_grpc
from services.common.auth import internal_metadata, open_channel
from services.common.clock import FakeClock
from services.common.config import Settings

CAMPAIGN = "journeys"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
STORE_ID = "jr-store"
ITEM_ID = "jr-latte"
ITEM_PRICE_FEN = 1_500
HANGZHOU = common_pb2.GeoPoint(latitude=30.27, longitude=120.16)


@asynccontextmanager
async def journey_suite(data: Any, start: dt.datetime) -> AsyncIterator[SimpleNamespace]:
    """Yields clock, settings, gateway (stub), auth(user) -> metadata, and servers."""
    from gateway.token import mint
    from gateway.wiring import build as build_gateway
    from services.card.wiring import build as build_card
    from services.catalog.wiring import build as build_catalog
    from services.lottery.wiring import build as build_lottery, draw_settings_from_env
    from services.order.wiring import build as build_order, config_from_env

    clock = FakeClock(start)
    env = {"MIANDAN_DATA": str(data), "MIANDAN_LOG_CALLS": "0", "MIANDAN_CAMPAIGN_ID": CAMPAIGN, "MIANDAN_USER_RATE": "0"}
    for name in ("card", "catalog", "order", "lottery", "gateway"):
        env[f"MIANDAN_{name.upper()}_PORT"] = "0"
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
    servers: list[Any] = []
    channel: grpc.aio.Channel | None = None

    async def start_one(name: str, build: Any, **kw: Any) -> str:
        addrs = {k: v for k, v in kw.items() if k.endswith("_addr")}
        extra = {k: v for k, v in kw.items() if not k.endswith("_addr")}
        settings = dataclasses.replace(Settings.from_env(name, env), **addrs)
        server = await build(settings, clock=clock, **extra)
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    try:
        card = await start_one("card", build_card)
        catalog = await start_one("catalog", build_catalog)
        # Unpaid orders wait almost a day (the most a card hold covers): the journeys' clock
        # jumps minutes at a time, and an order lapsing unpaid is not what they model.
        config = config_from_env({"MIANDAN_CAMPAIGN_ID": CAMPAIGN, "MIANDAN_PAYMENT_TTL_SECONDS": "86340"})
        order = await start_one("order", build_order, card_addr=card, catalog_addr=catalog, config=config)
        draws = draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": CAMPAIGN, "MIANDAN_LOTTERY_TICK_SECONDS": "3600"})
        lottery = await start_one("lottery", build_lottery, card_addr=card, draw_settings=draws, beacon=None)
        settings = dataclasses.replace(
            Settings.from_env("gateway", env), card_addr=card, catalog_addr=catalog, order_addr=order, lottery_addr=lottery
        )
        await _seed(settings)
        gateway = await build_gateway(settings, clock=clock, campaign_id=CAMPAIGN)
        port = await gateway.start()
        servers.append(gateway)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

        def auth(user: str) -> tuple:
            return (("authorization", f"Bearer {mint(settings, user, clock=clock, ttl=7 * 86_400)}"),)

        yield SimpleNamespace(
            clock=clock, settings=settings, servers=servers, auth=auth,
            gateway=gateway_service_pb2_grpc.GatewayServiceStub(channel),
        )
    finally:
        if channel is not None:
            await channel.close()
        for server in reversed(servers):
            await server.stop(0)


async def _seed(settings: Settings) -> None:
    admin = internal_metadata(settings, admin=True)
    async with open_channel(settings, settings.card_addr) as ch:
        req = cs.CreateCampaignRequest(
            request_id="c1", campaign_id=CAMPAIGN, name="春节免单", rules=card_pb2.CampaignRules(budget_fen=10**12)
        )
        req.start_time.FromDatetime(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        req.end_time.FromDatetime(dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
        await card_service_pb2_grpc.CardServiceStub(ch).CreateCampaign(req, metadata=admin, timeout=10)
    async with open_channel(settings, settings.catalog_addr) as ch:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(ch)
        brand = catalog_pb2.Brand(brand_id="jrbrand", name="旅程咖啡", category="咖啡")
        await catalog.UpsertBrand(cat.UpsertBrandRequest(request_id="b1", brand=brand), metadata=admin, timeout=10)
        item = catalog_pb2.MenuItem(item_id=ITEM_ID, brand_id="jrbrand", name="拿铁", category="咖啡", price_fen=ITEM_PRICE_FEN)
        await catalog.UpsertMenuItem(cat.UpsertMenuItemRequest(request_id="m1", item=item), metadata=admin, timeout=10)
        store = catalog_pb2.Store(
            store_id=STORE_ID, brand_id="jrbrand", name="旅程咖啡(测试店)", address="测试路1号", city="杭州", location=HANGZHOU
        )
        reply = await catalog.ImportStores(iter([cat.ImportStoresRequest(stores=[store])]), metadata=admin, timeout=10)
        assert reply.accepted == 1, reply
