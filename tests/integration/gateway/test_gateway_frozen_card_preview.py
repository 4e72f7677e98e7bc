"""OrderByText as a preview while the card service is frozen (`kill -STOP`, a disk stall under
its FULL-synchronous store), over real gRPC: the real catalog, order and lottery servers and the
gateway in this process (real SQLite on tmp_path, port 0), the gateway's card service one that
takes every call in and answers none. The card part of a preview only tells what a confirm would
cost (gateway.proto OrderPreview.card_unknown), so the preview is shown without it, as when the
card service is down, instead of waiting the caller's whole deadline on it."""
from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

from miandan.card.v1 import card_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite

pytestmark = pytest.mark.timeout(60)

CID = "preview-card-frozen"
HANGZHOU = common_pb2.GeoPoint(latitude=30.27, longitude=120.16)


class FrozenCard(card_service_pb2_grpc.CardServiceServicer):
    """Takes every call in and answers none until thawed."""

    def __init__(self) -> None:
        self.taken = 0
        self.thaw = asyncio.Event()

    async def ListCards(self, request, context):
        self.taken += 1
        await self.thaw.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "thawed after the test")


@pytest.fixture
async def frozen_card(tmp_path):
    from gateway.token import mint
    from gateway.wiring import build as build_gateway

    servers: list = []
    card = FrozenCard()
    card_server = grpc.aio.server()
    card_service_pb2_grpc.add_CardServiceServicer_to_server(card, card_server)
    card_port = card_server.add_insecure_port("127.0.0.1:0")
    await card_server.start()
    channel = None
    try:
        settings = await start_suite(tmp_path, CID, servers)
        await seed_campaign_and_store(settings, CID, "fz", "冻结", budget_fen=1_000_000)
        gateway = await build_gateway(
            dataclasses.replace(settings, port=0, metrics_port=None, card_addr=f"127.0.0.1:{card_port}"), campaign_id=CID
        )
        port = await gateway.start()
        servers.append(gateway)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        yield dataclasses.make_dataclass("Env", ["card", "gateway", "auth"])(
            card, gateway_service_pb2_grpc.GatewayServiceStub(channel),
            lambda user: (("authorization", f"Bearer {mint(settings, user)}"),),
        )
    finally:
        card.thaw.set()
        if channel is not None:
            await channel.close()
        for server in reversed(servers):
            await server.stop(0)
        await card_server.stop(0)


async def test_a_preview_is_shown_without_its_card_part_while_the_card_service_answers_nothing(frozen_card):
    ask = gw.OrderByTextRequest(text="一杯拿铁", location=HANGZHOU)

    preview = (await frozen_card.gateway.OrderByText(ask, metadata=frozen_card.auth("alice"), timeout=3)).preview

    assert frozen_card.card.taken >= 1  # the card service was asked, and never answered
    assert preview.proposal.store.store.store_id == "fz-store" and preview.preview_id
    assert (preview.total_fen, preview.card_id, preview.card_covered_fen, preview.payable_fen) == (1_500, "", 0, 1_500)
    assert preview.card_unknown and preview.clarification == ""
