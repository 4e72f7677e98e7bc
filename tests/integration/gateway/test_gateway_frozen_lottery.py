"""A frozen lottery must not take the wallet down with it, over real gRPC: the real gateway and card servers in this
process (real SQLite on tmp_path, port 0)."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime, timedelta, timezone

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_service_pb2_grpc
from services.common.auth import internal_metadata
from services.common.config import Settings

pytestmark = pytest.mark.timeout(60)

CID = "spring-2026"


class FrozenLottery(lottery_service_pb2_grpc.LotteryServiceServicer):
    """Takes every call in and answers none: a lottery under `kill -STOP`, or stalled on its disk."""

    def __init__(self) -> None:
        self.taken = 0
        self.thaw = asyncio.Event()

    async def _hang(self, context):
        self.taken += 1
        await self.thaw.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "thawed after the test")

    async def GetDraw(self, request, context):
        await self._hang(context)

    async def ListMyEntries(self, request, context):
        await self._hang(context)


@pytest.fixture
async def frozen_lottery(tmp_path):
    from gateway.token import mint
    from gateway.wiring import build as build_gateway
    from services.card.wiring import build as build_card

    base = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None, data_dir=tmp_path
    )
    lottery = FrozenLottery()
    lottery_server = grpc.aio.server()
    lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(lottery, lottery_server)
    lottery_port = lottery_server.add_insecure_port("127.0.0.1:0")
    await lottery_server.start()
    card = await build_card(dataclasses.replace(base, service="card"))
    card_port = await card.start()
    settings = dataclasses.replace(
        base, card_addr=f"127.0.0.1:{card_port}", lottery_addr=f"127.0.0.1:{lottery_port}",
        catalog_addr="127.0.0.1:1", order_addr="127.0.0.1:1",
    )
    gateway = await build_gateway(settings, campaign_id=CID)
    gateway_port = await gateway.start()
    card_ch = grpc.aio.insecure_channel(f"127.0.0.1:{card_port}")
    gateway_ch = grpc.aio.insecure_channel(f"127.0.0.1:{gateway_port}")
    try:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        create = cs.CreateCampaignRequest(request_id="c1", campaign_id=CID, name="春节30亿免单", rules=card_pb2.CampaignRules(budget_fen=10**9))
        now = datetime.now(timezone.utc)
        create.start_time.FromDatetime(now - timedelta(days=1))
        create.end_time.FromDatetime(now + timedelta(days=30))
        await cards.CreateCampaign(create, metadata=internal_metadata(settings, admin=True), timeout=10)
        yield dataclasses.make_dataclass("Env", ["cards", "gateway", "lottery", "md", "auth"])(
            cards, gateway_service_pb2_grpc.GatewayServiceStub(gateway_ch), lottery, internal_metadata(settings),
            lambda user: (("authorization", f"Bearer {mint(settings, user)}"),),
        )
    finally:
        lottery.thaw.set()
        await gateway_ch.close()
        await card_ch.close()
        await gateway.stop(0)
        await card.stop(0)
        await lottery_server.stop(0)


async def _qualify(env, user: str) -> None:
    """`user` joined and invited three new users (the lottery's threshold), through the card service."""
    await env.cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id="s", campaign_id=CID, user_id=user), metadata=env.md, timeout=10)
    code = (await env.cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id=user), metadata=env.md, timeout=10)).invite_code
    for friend in ("f1", "f2", "f3"):
        await env.cards.AcceptInvite(
            cs.AcceptInviteRequest(request_id=f"i-{friend}", campaign_id=CID, invitee_user_id=friend, text=code.pass_phrase_text,
                                   claim_signup=True, signup_request_id=f"s-{friend}"),
            metadata=env.md, timeout=10,
        )


@pytest.mark.parametrize("rpc", ["GetWallet", "Join"])
async def test_a_frozen_lottery_leaves_a_qualified_users_wallet_shown_without_lottery_standing_in_time(frozen_lottery, rpc):
    """GetWallet's contract: "when the lottery service is unreachable the wallet is still
    returned, with entered_today false". A frozen lottery used to hold both lottery calls for the
    caller's whole deadline: the wallet came at the last moment, and a qualified user's (its entry
    is read after the draw, with no time left) failed DEADLINE_EXCEEDED."""
    env = frozen_lottery
    await _qualify(env, "alice")
    request = gw.GetWalletRequest() if rpc == "GetWallet" else gw.JoinRequest(request_id="j")
    start = time.perf_counter()
    reply = await getattr(env.gateway, rpc)(request, metadata=env.auth("alice"), timeout=3)
    took = time.perf_counter() - start
    assert len(reply.wallet.cards) == 4 and reply.wallet.lottery.qualified and not reply.wallet.lottery.entered_today
    assert env.lottery.taken >= 1
    assert took < 2.5, f"the wallet waited {took:.2f} s of the caller's 3 s on a lottery that answers nothing"

