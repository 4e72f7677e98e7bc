"""The journey suite (journey_suite.py) with restarts: the gateway or one upstream service
(card, catalog, order, lottery) stopped gracefully and started again on its data, on the same
FakeClock, while journeys go on. An upstream comes back on its own port (the others' channels
keep its address); the gateway on a new port or its own, and the clients reconnect to it."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, AsyncIterator

import grpc

from miandan.gateway.v1 import gateway_service_pb2_grpc
from services.common.clock import FakeClock
from services.common.config import Settings

from tests.integration.journeys.journey_suite import CAMPAIGN, _seed

UPSTREAMS = ("card", "catalog", "order", "lottery")


@asynccontextmanager
async def restartable_suite(data: Any, start: dt.datetime) -> AsyncIterator[SimpleNamespace]:
    """Yields what journey_suite yields (clock, settings, gateway stub, auth, servers by name),
    plus restart(name, grace, same_port) and `up`, an Event cleared while something restarts."""
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
    servers: dict[str, Any] = {}
    recipes: dict[str, tuple[Any, Settings, dict]] = {}
    suite = SimpleNamespace(clock=clock, servers=servers, up=asyncio.Event(), restarts=[])
    suite.up.set()
    channel: list[grpc.aio.Channel] = []

    async def start_one(name: str, build: Any, settings: Settings, **extra: Any) -> str:
        server = await build(settings, clock=clock, **extra)
        port = await server.start()
        servers[name] = server
        # The same port on a restart: the other services' channels hold this address.
        recipes[name] = (build, dataclasses.replace(settings, port=port), extra)
        return f"127.0.0.1:{port}"

    def upstream(name: str, **kw: Any) -> Settings:
        return dataclasses.replace(Settings.from_env(name, env), **kw)

    def connect(port: int) -> None:
        channel.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        suite.gateway = gateway_service_pb2_grpc.GatewayServiceStub(channel[-1])
        suite.gateway_port = port

    async def restart(name: str, grace: float, same_port: bool = True) -> None:
        suite.up.clear()
        try:
            await servers[name].stop(grace)
            build, settings, extra = recipes[name]
            if name == "gateway" and not same_port:
                settings = dataclasses.replace(settings, port=0)
            server = await build(settings, clock=clock, **extra)
            port = await server.start()
            servers[name] = server
            if name == "gateway":
                connect(port)
            suite.restarts.append((name, grace, port))
        finally:
            suite.up.set()

    try:
        card = await start_one("card", build_card, upstream("card"))
        catalog = await start_one("catalog", build_catalog, upstream("catalog"))
        config = config_from_env({"MIANDAN_CAMPAIGN_ID": CAMPAIGN, "MIANDAN_PAYMENT_TTL_SECONDS": "86340"})
        order = await start_one("order", build_order, upstream("order", card_addr=card, catalog_addr=catalog), config=config)
        draws = draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": CAMPAIGN, "MIANDAN_LOTTERY_TICK_SECONDS": "3600"})
        lottery = await start_one(
            "lottery", build_lottery, upstream("lottery", card_addr=card), draw_settings=draws, beacon=None
        )
        settings = dataclasses.replace(
            Settings.from_env("gateway", env), card_addr=card, catalog_addr=catalog, order_addr=order, lottery_addr=lottery
        )
        await _seed(settings)
        connect(int((await start_one("gateway", build_gateway, settings, campaign_id=CAMPAIGN)).rsplit(":", 1)[1]))

        def auth(user: str) -> tuple:
            return (("authorization", f"Bearer {mint(settings, user, clock=clock, ttl=7 * 86_400)}"),)

        suite.settings, suite.auth, suite.restart = settings, auth, restart
        yield suite
    finally:
        for ch in channel:
            await ch.close()
        for server in reversed(list(servers.values())):
            await server.stop(0)
