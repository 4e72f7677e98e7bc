"""Join through the real gateway, card and lottery servers (in-process, real SQLite on tmp_path,
port 0): the wallet it answers with comes from its last card write and is the very WalletView
the gateway's GetWallet (the path Join used before) shows right after, for a plain join, a
valid pass-phrase, a refused one, and replays, with one card RPC fewer than before."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from prometheus_client import REGISTRY

from miandan.card.v1 import card_pb2, card_service_pb2, card_service_pb2_grpc
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from services.card.invite_code import check_letter
from services.common.auth import internal_metadata
from services.common.clock import FakeClock
from services.common.config import Settings

pytestmark = pytest.mark.timeout(60)

SHANGHAI = timezone(timedelta(hours=8))


def card_rpcs() -> dict[str, float]:
    """RPCs the card server handled so far, by method (the servers share this process's registry)."""
    counts: dict[str, float] = {}
    for metric in REGISTRY.collect():
        for s in metric.samples:
            if s.name == "miandan_rpc_calls_total" and s.labels.get("service") == "card":
                counts[s.labels["method"]] = counts.get(s.labels["method"], 0) + s.value
    return counts


def card_calls_since(before: dict[str, float]) -> dict[str, int]:
    now = card_rpcs()
    return {m: int(v - before.get(m, 0)) for m, v in now.items() if v - before.get(m, 0)}


@pytest.fixture
async def suite(tmp_path):
    from services.card.wiring import build as build_card
    from services.lottery.wiring import build as build_lottery, draw_settings_from_env

    from gateway.token import mint
    from gateway.wiring import build as build_gateway

    clock = FakeClock(datetime(2026, 1, 28, 10, 0, tzinfo=SHANGHAI))
    base = dataclasses.replace(
        Settings.from_env("gateway", {"MIANDAN_LOG_CALLS": "0"}), port=0, metrics_port=None, data_dir=tmp_path
    )
    servers, channels = [], []
    try:
        card = await build_card(dataclasses.replace(base, service="card"), clock=clock)
        card_port = await card.start()
        servers.append(card)
        lottery = await build_lottery(
            dataclasses.replace(base, service="lottery", card_addr=f"127.0.0.1:{card_port}"),
            clock=clock,
            draw_settings=draw_settings_from_env({"MIANDAN_CAMPAIGN_ID": "spring-2026", "MIANDAN_LOTTERY_TICK_SECONDS": "3600"}),
        )
        lottery_port = await lottery.start()
        servers.append(lottery)
        settings = dataclasses.replace(
            base, card_addr=f"127.0.0.1:{card_port}", lottery_addr=f"127.0.0.1:{lottery_port}",
            catalog_addr="127.0.0.1:1", order_addr="127.0.0.1:1",  # unused: a stray call fails fast
        )
        gateway = await build_gateway(settings, clock=clock, campaign_id="spring-2026")
        gateway_port = await gateway.start()
        servers.append(gateway)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in (card_port, gateway_port)]
        create = card_service_pb2.CreateCampaignRequest(
            request_id="c1", campaign_id="spring-2026", name="春节30亿免单",
            rules=card_pb2.CampaignRules(budget_fen=10**12, signup_grant=1, invitee_grant=2),
        )
        create.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=SHANGHAI))
        create.end_time.FromDatetime(datetime(2028, 1, 1, tzinfo=SHANGHAI))
        await card_service_pb2_grpc.CardServiceStub(channels[0]).CreateCampaign(
            create, metadata=internal_metadata(settings, admin=True), timeout=10
        )
        stub = gateway_service_pb2_grpc.GatewayServiceStub(channels[1])

        class Suite:
            def auth(self, user: str) -> tuple:
                return (("authorization", f"Bearer {mint(settings, user, clock=clock, ttl=86400)}"),)

            async def join(self, user: str, rid: str, text: str = "") -> gw.JoinResponse:
                return await stub.Join(gw.JoinRequest(request_id=rid, pass_phrase_text=text), metadata=self.auth(user), timeout=10)

            async def wallet(self, user: str):
                return (await stub.GetWallet(gw.GetWalletRequest(), metadata=self.auth(user), timeout=10)).wallet

        s = Suite()
        await s.join("host", "warm-up")  # the campaign and today's draw are cached from here on
        yield s
    finally:
        for channel in channels:
            await channel.close()
        for server in reversed(servers):
            await server.stop(0)


async def test_a_plain_join_is_one_card_call_and_shows_the_wallet_get_wallet_shows(suite):
    before = card_rpcs()
    joined = await suite.join("alice", "r1")
    assert card_calls_since(before) == {"ClaimSignupCard": 1}  # was ClaimSignupCard + GetWallet
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == ""
    assert len(joined.wallet.cards) == 1 and joined.wallet.wallet.cards_granted == 1
    assert joined.wallet == await suite.wallet("alice")


async def test_a_join_with_a_valid_pass_phrase_is_two_card_calls_and_counts_the_invite(suite):
    phrase = (await suite.wallet("host")).wallet.pass_phrase_text
    before = card_rpcs()
    joined = await suite.join("bob", "r1", phrase)
    assert card_calls_since(before) == {"ClaimSignupCard": 1, "AcceptInvite": 1}
    assert joined.newly_joined and joined.invite_accepted and joined.invite_problem == ""
    assert joined.wallet.wallet.cards_granted == 2 and len(joined.wallet.cards) == 2  # the invitee top-up
    assert joined.wallet.wallet.invited_by_user_id == "host"
    assert joined.wallet == await suite.wallet("bob")
    assert (await suite.wallet("host")).lottery.invites == 1


async def test_a_refused_pass_phrase_still_joins_and_reads_the_wallet_with_get_wallet(suite):
    before = card_rpcs()
    nobody_s = "ZZZZZZZZ" + check_letter("ZZZZZZZZ")  # well-formed, but no user's code
    joined = await suite.join("carol", "r1", f"¥{nobody_s}¥")
    calls = card_calls_since(before)
    assert calls == {"ClaimSignupCard": 1, "AcceptInvite": 1, "GetWallet": 1}, calls
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == "INVITE_CODE_NOT_FOUND"
    assert joined.wallet == await suite.wallet("carol")


@pytest.mark.parametrize("with_phrase", [False, True])
async def test_a_replayed_join_answers_with_the_same_wallet(suite, with_phrase):
    phrase = (await suite.wallet("host")).wallet.pass_phrase_text if with_phrase else ""
    first = await suite.join("dave", "r1", phrase)
    before = card_rpcs()
    again = await suite.join("dave", "r1", phrase)
    assert sum(card_calls_since(before).values()) == (2 if with_phrase else 1)
    assert not again.newly_joined and again.invite_accepted == with_phrase
    assert again.wallet == first.wallet == await suite.wallet("dave")
