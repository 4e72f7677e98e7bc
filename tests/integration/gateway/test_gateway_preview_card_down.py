"""OrderByText with the card service down, over real gRPC: the real card, catalog, order and
lottery servers and the gateway in this process (real SQLite on tmp_path, port 0). A preview is
still shown, its card part unknown; a confirm is refused (the order service cannot hold a card)."""
from __future__ import annotations

import dataclasses

import grpc
import pytest

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.common.auth import internal_metadata, open_channel
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite


pytestmark = pytest.mark.timeout(60)

CID = "preview-card-down"
HANGZHOU = common_pb2.GeoPoint(latitude=30.27, longitude=120.16)


@pytest.fixture
async def suite(tmp_path):
    from gateway.token import mint
    from gateway.wiring import build as build_gateway

    servers: list = []
    channel = None
    try:
        settings = await start_suite(tmp_path, CID, servers)
        await seed_campaign_and_store(settings, CID, "pv", "预览", budget_fen=1_000_000)
        gateway = await build_gateway(dataclasses.replace(settings, port=0, metrics_port=None), campaign_id=CID)
        port = await gateway.start()
        servers.append(gateway)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        yield dataclasses.make_dataclass("Env", ["settings", "card_server", "gateway", "auth"])(
            settings, servers[0], gateway_service_pb2_grpc.GatewayServiceStub(channel),
            lambda user: (("authorization", f"Bearer {mint(settings, user)}"),),
        )
    finally:
        if channel is not None:
            await channel.close()
        for server in reversed(servers):
            await server.stop(0)


async def test_the_preview_degrades_and_the_confirm_refuses_while_the_card_service_is_down(suite):
    async with open_channel(suite.settings, suite.settings.card_addr) as ch:
        await card_service_pb2_grpc.CardServiceStub(ch).ClaimSignupCard(
            cs.ClaimSignupCardRequest(request_id="s-alice", campaign_id=CID, user_id="alice"),
            metadata=internal_metadata(suite.settings), timeout=10,
        )
    ask = gw.OrderByTextRequest(text="一杯拿铁", location=HANGZHOU)
    shown = (await suite.gateway.OrderByText(ask, metadata=suite.auth("alice"), timeout=10)).preview
    assert shown.card_id and shown.card_covered_fen == shown.total_fen == 1_500 and not shown.card_unknown

    await suite.card_server.stop(0)

    preview = (await suite.gateway.OrderByText(ask, metadata=suite.auth("alice"), timeout=10)).preview
    assert preview.proposal.store.store.store_id == "pv-store" and preview.preview_id
    assert (preview.total_fen, preview.card_id, preview.card_covered_fen, preview.payable_fen) == (1_500, "", 0, 1_500)
    assert preview.card_unknown and preview.clarification == ""

    confirm = gw.OrderByTextRequest(request_id="o1", preview_id=preview.preview_id, confirm=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await suite.gateway.OrderByText(confirm, metadata=suite.auth("alice"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
