"""Every listing the audit pages through stops on a page token it was already given: a service
answering the same token again (a bug, or a store whose cursor does not advance) must end the
audit with exit 2 and one line, not keep it asking forever while it piles up the same entrants."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from miandan.order.v1 import order_service_pb2_grpc
from services.audit.fetch import PageLoop, Targets, fetch_facts
from tests.integration.audit.test_audit_fetch import Card, Lottery, Order, World


class LoopingVerify(Lottery):
    async def VerifyDraw(self, request, context):
        reply = await super().VerifyDraw(request, context)
        reply.next_page_token = "0"  # the first page again, forever
        return reply


class LoopingInviteStats(Card):
    async def GetInviteStats(self, request, context):
        return cs.GetInviteStatsResponse(invited_count=0, next_page_token="again")


async def _serve(card: Card, lottery: Lottery, w: World):
    server = grpc.aio.server()
    card_service_pb2_grpc.add_CardServiceServicer_to_server(card, server)
    order_service_pb2_grpc.add_OrderServiceServicer_to_server(Order(w), server)
    lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(lottery, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("looping", ["VerifyDraw", "GetInviteStats"])
async def test_a_listing_that_repeats_its_page_token_stops_the_audit(looping):
    w = World()
    card = LoopingInviteStats(w) if looping == "GetInviteStats" else Card(w)
    lottery = LoopingVerify(w) if looping == "VerifyDraw" else Lottery(w)
    server, addr = await _serve(card, lottery, w)
    try:
        with pytest.raises(PageLoop, match=looping):
            await asyncio.wait_for(fetch_facts(Targets.resolve({"card": addr, "order": addr, "lottery": addr})), 10)
    finally:
        await server.stop(0)
