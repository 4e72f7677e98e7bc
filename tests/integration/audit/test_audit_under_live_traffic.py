"""The audit run while users keep joining and ordering (an operator audits during an incident;
the load does not stop for it): a consistent suite gives no findings, however the audit's reads
interleave with the writes."""
from __future__ import annotations

import asyncio
import itertools

import pytest

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.audit import run_audit
from services.common.auth import internal_metadata, open_channel
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite

CID = "audit-live"


@pytest.fixture
async def suite(tmp_path):
    servers = []
    settings = await start_suite(tmp_path, CID, servers)
    try:
        yield settings
    finally:
        for server in reversed(servers):
            await server.stop(0)


async def test_an_audit_under_joins_and_orders_of_a_consistent_suite_finds_nothing(suite):
    settings = suite
    store_id = await seed_campaign_and_store(settings, CID, "live", "直播", budget_fen=100_000_000)
    md = internal_metadata(settings)
    stop = asyncio.Event()
    users = itertools.count()

    async with open_channel(settings, settings.card_addr) as card_ch, open_channel(settings, settings.order_addr) as order_ch:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        orders = order_service_pb2_grpc.OrderServiceStub(order_ch)

        async def shopper() -> None:
            while not stop.is_set():
                user = f"u{next(users)}"
                await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
                await orders.PlaceOrder(
                    os_.PlaceOrderRequest(request_id=f"o-{user}", user_id=user, store_id=store_id, campaign_id=CID,
                                          lines=[catalog_pb2.LineSelection(item_id="live-latte", quantity=1)], card_use=order_pb2.CARD_USE_BEST),
                    metadata=md, timeout=10,
                )

        shoppers = [asyncio.ensure_future(shopper()) for _ in range(4)]
        try:
            await asyncio.sleep(0.3)
            seen = []
            for _ in range(6):
                # A second look a second later: each call chain here takes milliseconds.
                seen += await run_audit(settings, CID, confirm_after=1.0)
        finally:
            stop.set()
            await asyncio.gather(*shoppers)
    assert next(users) > 20  # traffic really ran beside the audits
    assert seen == [], "\n".join(map(str, seen[:20]))
    assert await run_audit(settings, CID) == []
