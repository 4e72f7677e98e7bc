"""Real card and catalog servers in-process (their own wiring.build, port 0, SQLite on tmp_path),
seeded with this test's own small catalog and campaigns, and the order server in front of them.

The order server reaches the card service through a TCP proxy the tests can cut (down) or slow
down (responses held back), to prove what happens when an upstream fails mid-saga."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from miandan.card.v1 import card_pb2, card_service_pb2 as card_svc, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2 as cat_svc, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.order.v1 import order_service_pb2_grpc
from services.card.wiring import build as build_card
from services.catalog.wiring import build as build_catalog
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings
from services.order.handlers import OrderConfig
from services.order.payment import SandboxPaymentProvider
from services.order.wiring import build as build_order

CAMPAIGN_ONE = "it-one"  # one sign-up card per user
CAMPAIGN_TWO = "it-two"  # two sign-up cards per user
STORE, OTHER_STORE = "it-store-1", "it-store-2"
LATTE, TEA, CAKE = "it-latte", "it-tea", "it-cake"  # 1500, 800, 3000 fen


class TcpProxy:
    """Loopback TCP relay. `down` drops every connection and refuses new ones; `delay` holds
    the server's answers back for that many seconds (the request still reaches the server)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self.delay = 0.0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self) -> None:
        self.down = True
        for w in list(self._writers):
            w.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for coro in (self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, True)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        pumper = asyncio.ensure_future(pump())
        try:
            while not self.down:
                data = await reader.read(65536)
                if not data:
                    break
                queue.put_nowait((loop.time() + (self.delay if answers else 0.0), data))
            queue.put_nowait((0.0, b""))
            await pumper
        except (ConnectionError, OSError):
            pass
        finally:
            pumper.cancel()
            writer.close()
            self._writers.discard(writer)

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def ts(dt: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(dt)
    return t


@dataclass
class Stack:
    tmp: Any
    clock: FakeClock
    card_server: Any
    catalog_server: Any
    proxy: TcpProxy
    settings: Settings
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    order_server: Any = None
    payments: SandboxPaymentProvider | None = None
    card: Any = None
    catalog: Any = None
    order: Any = None
    md: tuple[tuple[str, str], ...] = ()
    admin_md: tuple[tuple[str, str], ...] = ()
    merchant_md: tuple[tuple[str, str], ...] = ()

    @property
    def card_addr(self) -> str:
        return f"127.0.0.1:{self.card_server.port}"

    @property
    def catalog_addr(self) -> str:
        return f"127.0.0.1:{self.catalog_server.port}"

    @property
    def service(self) -> Any:
        return self.order_server.order_service

    async def start_order(self, **config: Any) -> None:
        settings = replace(
            self.settings,
            service="order",
            data_dir=self.tmp / "order",
            card_addr=f"127.0.0.1:{self.proxy.port}",
            catalog_addr=self.catalog_addr,
        )
        self.payments = SandboxPaymentProvider(settings.internal_token)
        cfg = OrderConfig(sweep_interval_seconds=3600, watch_poll_seconds=1.0, **config)
        self.order_server = await build_order(settings, clock=self.clock, payment_provider=self.payments, config=cfg)
        port = await self.order_server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.channels.append(channel)
        self.order = order_service_pb2_grpc.OrderServiceStub(channel)
        await self.service.drain()

    async def signup(self, user: str, campaign: str = CAMPAIGN_ONE) -> list[str]:
        resp = await self.card.ClaimSignupCard(
            card_svc.ClaimSignupCardRequest(request_id=f"signup-{campaign}-{user}", campaign_id=campaign, user_id=user),
            metadata=self.md,
        )
        return [c.card_id for c in resp.cards]

    async def cards(self, user: str, campaign: str = CAMPAIGN_ONE) -> dict[str, int]:
        resp = await self.card.ListCards(
            card_svc.ListCardsRequest(campaign_id=campaign, user_id=user, page_size=100), metadata=self.md
        )
        return {c.card_id: c.state for c in resp.cards}

    async def campaign_cards(self, campaign: str) -> list[Any]:
        out, token = [], ""
        while True:
            resp = await self.card.ListCampaignCards(
                card_svc.ListCampaignCardsRequest(campaign_id=campaign, page_size=1000, page_token=token),
                metadata=self.admin_md,
            )
            out.extend(resp.cards)
            token = resp.next_page_token
            if not token:
                return out


async def seed(stack: Stack) -> None:
    md, admin = stack.md, stack.admin_md
    for campaign, grant in ((CAMPAIGN_ONE, 1), (CAMPAIGN_TWO, 2)):
        await stack.card.CreateCampaign(
            card_svc.CreateCampaignRequest(
                request_id=f"create-{campaign}",
                campaign_id=campaign,
                name=f"order tests {campaign}",
                start_time=ts(datetime(2026, 1, 1, tzinfo=timezone.utc)),
                end_time=ts(datetime(2027, 12, 31, tzinfo=timezone.utc)),
                rules=card_pb2.CampaignRules(
                    budget_fen=100_000_000, signup_grant=grant, per_user_card_cap=21, reservation_ttl_seconds=900
                ),
            ),
            metadata=admin,
        )
    await stack.catalog.UpsertBrand(
        cat_svc.UpsertBrandRequest(
            request_id="brand-it", brand=catalog_pb2.Brand(brand_id="it-brand", name="测试茶饮", category="茶饮")
        ),
        metadata=admin,
    )
    for item_id, name, price in ((LATTE, "测试拿铁", 1500), (TEA, "测试奶茶", 800), (CAKE, "测试蛋糕", 3000)):
        await stack.catalog.UpsertMenuItem(
            cat_svc.UpsertMenuItemRequest(
                request_id=f"item-{item_id}",
                item=catalog_pb2.MenuItem(item_id=item_id, brand_id="it-brand", name=name, category="茶饮", price_fen=price),
            ),
            metadata=admin,
        )

    async def stores():
        yield cat_svc.ImportStoresRequest(
            stores=[
                catalog_pb2.Store(
                    store_id=sid,
                    brand_id="it-brand",
                    name=f"测试茶饮({sid})",
                    address="测试路 1 号",
                    city="杭州",
                    location=common_pb2.GeoPoint(latitude=30.27, longitude=120.15 + i * 0.01),
                )
                for i, sid in enumerate((STORE, OTHER_STORE))
            ]
        )

    resp = await stack.catalog.ImportStores(stores(), metadata=admin)
    assert resp.accepted == 2, resp


@pytest.fixture
async def stack(tmp_path):
    clock = FakeClock(datetime(2026, 1, 28, 4, 0, tzinfo=timezone.utc))
    base = Settings(service="card", port=0, log_calls=False, log_level="WARNING", grace_seconds=0.5)
    card_server = await build_card(replace(base, service="card", data_dir=tmp_path / "card"), clock=clock)
    catalog_server = await build_catalog(replace(base, service="catalog", data_dir=tmp_path / "catalog"), clock=clock)
    await card_server.start()
    await catalog_server.start()
    proxy = TcpProxy(card_server.port)
    await proxy.start()
    s = Stack(tmp_path, clock, card_server, catalog_server, proxy, base)
    s.md = internal_metadata(base)
    s.admin_md = internal_metadata(base, admin=True)
    s.merchant_md = internal_metadata(base, merchant=True)
    card_channel = grpc.aio.insecure_channel(s.card_addr)
    catalog_channel = grpc.aio.insecure_channel(s.catalog_addr)
    s.channels += [card_channel, catalog_channel]
    s.card = card_service_pb2_grpc.CardServiceStub(card_channel)
    s.catalog = catalog_service_pb2_grpc.CatalogServiceStub(catalog_channel)
    await seed(s)
    await s.start_order()
    try:
        yield s
    finally:
        if s.order_server is not None:
            await s.order_server.stop(0.5)
        await proxy.stop()
        for ch in s.channels:
            await ch.close()
        await card_server.stop(0.5)
        await catalog_server.stop(0.5)
