"""The card, catalog, order and lottery servers in one process (wiring.build, port 0) on one data
directory, and a campaign with one all-day store: what the audit and backup tests run against."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from services.common.auth import internal_metadata, open_channel
from services.common.config import Settings


async def start_suite(data: Any, campaign_id: str, servers: list, lottery_clock: Any = None) -> Settings:
    """Starts the four services (appended to servers, for the caller to stop in reverse) and
    returns the gateway's Settings pointing at them."""
    from services.card.wiring import build as build_card
    from services.catalog.wiring import build as build_catalog
    from services.lottery.wiring import build as build_lottery
    from services.order.wiring import build as build_order

    env = {"MIANDAN_DATA": str(data), "MIANDAN_LOG_CALLS": "0", "MIANDAN_CAMPAIGN_ID": campaign_id}
    for name in ("card", "catalog", "order", "lottery", "gateway"):
        env[f"MIANDAN_{name.upper()}_PORT"] = "0"
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"

    async def start(name, build, clock=None, **addrs):
        settings = dataclasses.replace(Settings.from_env(name, env), **addrs)
        server = await build(settings, clock=clock) if clock is not None else await build(settings)
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    card = await start("card", build_card)
    catalog = await start("catalog", build_catalog)
    order = await start("order", build_order, card_addr=card, catalog_addr=catalog)
    lottery = await start("lottery", build_lottery, card_addr=card, clock=lottery_clock)
    return dataclasses.replace(Settings.from_env("gateway", env), card_addr=card, catalog_addr=catalog, order_addr=order, lottery_addr=lottery)


async def seed_campaign_and_store(settings: Settings, campaign_id: str, prefix: str, name: str, budget_fen: int) -> str:
    """A running campaign and one store of brand `{prefix}brand` selling `{prefix}-latte` (15
    yuan); returns the store id. No opening hours: open around the clock, so a test does not
    depend on the time of day."""
    admin = internal_metadata(settings, admin=True)
    async with open_channel(settings, settings.card_addr) as ch:
        req = cs.CreateCampaignRequest(request_id="c1", campaign_id=campaign_id, name=prefix, rules=card_pb2.CampaignRules(budget_fen=budget_fen))
        req.start_time.FromDatetime(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        req.end_time.FromDatetime(dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
        await card_service_pb2_grpc.CardServiceStub(ch).CreateCampaign(req, metadata=admin, timeout=10)
    async with open_channel(settings, settings.catalog_addr) as ch:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(ch)
        await catalog.UpsertBrand(
            cat.UpsertBrandRequest(request_id="b1", brand=catalog_pb2.Brand(brand_id=f"{prefix}brand", name=f"{name}咖啡", category="咖啡")),
            metadata=admin, timeout=10,
        )
        item = catalog_pb2.MenuItem(item_id=f"{prefix}-latte", brand_id=f"{prefix}brand", name="拿铁", category="咖啡", price_fen=1_500)
        await catalog.UpsertMenuItem(cat.UpsertMenuItemRequest(request_id="m1", item=item), metadata=admin, timeout=10)
        store = catalog_pb2.Store(store_id=f"{prefix}-store", brand_id=f"{prefix}brand", name=f"{name}咖啡(测试店)", address="测试路1号",
                                  city="杭州", location=common_pb2.GeoPoint(latitude=30.27, longitude=120.16))
        reply = await catalog.ImportStores(iter([cat.ImportStoresRequest(stores=[store])]), metadata=admin, timeout=10)
        assert reply.accepted == 1, reply
    return f"{prefix}-store"
