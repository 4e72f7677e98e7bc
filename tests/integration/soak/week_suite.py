"""The five servers in one process (wiring.build, port 0) sharing one FakeClock, and a campaign
with one all-day store: what the soak drives through simulated days. Unlike
tests/integration/in_process_suite.py every service (the gateway too) reads the same clock, so
a day passes for all of them at once."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from services.common.auth import internal_metadata, open_channel
from services.common.clock import FakeClock
from services.common.config import Settings

CAMPAIGN = "soak-week"
BRAND = "soakbrand"
ITEM = "soak-latte"
PRICE_FEN = 3_000  # above the card's face value: every order has money due


@dataclasses.dataclass
class WeekSuite:
    settings: Settings  # the gateway's, pointing at the others
    card: Any
    catalog: Any
    order: Any
    lottery: Any
    gateway: Any
    stores: list[str]


def _env(data: Any, overrides: dict[str, str]) -> dict[str, str]:
    env = {"MIANDAN_DATA": str(data), "MIANDAN_LOG_CALLS": "0", "MIANDAN_CAMPAIGN_ID": CAMPAIGN}
    for name in ("card", "catalog", "order", "lottery", "gateway"):
        env[f"MIANDAN_{name.upper()}_PORT"] = "0"
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
    env.update(overrides)
    return env


async def start_week_suite(data: Any, clock: FakeClock, servers: list, env_overrides: dict[str, str] | None = None, **builds: Any) -> WeekSuite:
    """Starts the five servers (appended to `servers`, for the caller to stop in reverse).
    builds: extra keyword arguments per service (e.g. order={"config": ...})."""
    from gateway.wiring import build as build_gateway
    from services.card.wiring import build as build_card
    from services.catalog.wiring import build as build_catalog
    from services.lottery.wiring import build as build_lottery
    from services.order.wiring import build as build_order

    env = _env(data, env_overrides or {})

    async def start(name, build, **addrs):
        settings = dataclasses.replace(Settings.from_env(name, env), **addrs)
        server = await build(settings, clock=clock, **builds.get(name, {}))
        port = await server.start()
        servers.append(server)
        return server, f"127.0.0.1:{port}"

    card, card_addr = await start("card", build_card)
    catalog, catalog_addr = await start("catalog", build_catalog)
    order, order_addr = await start("order", build_order, card_addr=card_addr, catalog_addr=catalog_addr)
    lottery, lottery_addr = await start("lottery", build_lottery, card_addr=card_addr)
    addrs = dict(card_addr=card_addr, catalog_addr=catalog_addr, order_addr=order_addr, lottery_addr=lottery_addr)
    gateway, gateway_addr = await start("gateway", build_gateway, **addrs)
    settings = dataclasses.replace(Settings.from_env("gateway", env), gateway_addr=gateway_addr, **addrs)
    return WeekSuite(settings, card, catalog, order, lottery, gateway, [])


async def seed(suite: WeekSuite, clock: FakeClock, store_count: int) -> list[str]:
    """A campaign running for the weeks around the clock's day, and `store_count` stores of one
    brand, open around the clock (no hours)."""
    settings = suite.settings
    admin = internal_metadata(settings, admin=True)
    async with open_channel(settings, settings.card_addr) as ch:
        req = cs.CreateCampaignRequest(
            request_id="c1", campaign_id=CAMPAIGN, name="soak", rules=card_pb2.CampaignRules(budget_fen=10**13),
        )
        req.start_time.FromDatetime(clock.now() - dt.timedelta(days=1))
        req.end_time.FromDatetime(clock.now() + dt.timedelta(days=60))
        await card_service_pb2_grpc.CardServiceStub(ch).CreateCampaign(req, metadata=admin, timeout=10)
    async with open_channel(settings, settings.catalog_addr) as ch:
        catalog = catalog_service_pb2_grpc.CatalogServiceStub(ch)
        await catalog.UpsertBrand(
            cat.UpsertBrandRequest(request_id="b1", brand=catalog_pb2.Brand(brand_id=BRAND, name="浸泡咖啡", category="咖啡")),
            metadata=admin, timeout=10,
        )
        item = catalog_pb2.MenuItem(item_id=ITEM, brand_id=BRAND, name="拿铁", category="咖啡", price_fen=PRICE_FEN)
        await catalog.UpsertMenuItem(cat.UpsertMenuItemRequest(request_id="m1", item=item), metadata=admin, timeout=10)
        stores = [
            catalog_pb2.Store(
                store_id=f"soak-store-{n}", brand_id=BRAND, name=f"浸泡咖啡({n}号店)", address=f"测试路{n}号", city="杭州",
                location=common_pb2.GeoPoint(latitude=30.27 + n * 0.001, longitude=120.16),
            )
            for n in range(store_count)
        ]
        reply = await catalog.ImportStores(iter([cat.ImportStoresRequest(stores=stores)]), metadata=admin, timeout=10)
        assert reply.accepted == store_count, reply
    suite.stores = [s.store_id for s in stores]
    return suite.stores
