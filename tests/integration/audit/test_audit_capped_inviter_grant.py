"""The audit against the real card service (and the order and lottery services it also reads):
an inviter whose last inviter grant is cut short by the per-user cap is not a finding, exactly
as the card service grants it (cap 4, two cards per invite: 1 + 2 + 1, then nothing)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from services.audit import run_audit
from services.common.auth import internal_metadata, open_channel
from services.common.config import Settings

CID = "capped"


@pytest.fixture
async def suite(tmp_path):
    from services.card.wiring import build as build_card
    from services.catalog.wiring import build as build_catalog
    from services.lottery.wiring import build as build_lottery
    from services.order.wiring import build as build_order

    env = {"MIANDAN_DATA": str(tmp_path), "MIANDAN_LOG_CALLS": "0", "MIANDAN_CAMPAIGN_ID": CID}
    for name in ("card", "catalog", "order", "lottery", "gateway"):
        env[f"MIANDAN_{name.upper()}_PORT"] = "0"
        env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
    servers = []

    async def start(name, build, **addrs):
        server = await build(dataclasses.replace(Settings.from_env(name, env), **addrs))
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    try:
        card = await start("card", build_card)
        catalog = await start("catalog", build_catalog)
        order = await start("order", build_order, card_addr=card, catalog_addr=catalog)
        lottery = await start("lottery", build_lottery, card_addr=card)
        yield dataclasses.replace(Settings.from_env("gateway", env), card_addr=card, catalog_addr=catalog, order_addr=order, lottery_addr=lottery)
    finally:
        for server in reversed(servers):
            await server.stop(0)


async def test_an_inviter_grant_cut_short_by_the_cap_audits_clean(suite):
    settings = suite
    admin, md = internal_metadata(settings, admin=True), internal_metadata(settings)
    async with open_channel(settings, settings.card_addr) as ch:
        cards = card_service_pb2_grpc.CardServiceStub(ch)
        rules = card_pb2.CampaignRules(budget_fen=1_000_000, per_user_card_cap=4, signup_grant=1, inviter_grant=2, invitee_grant=1)
        req = cs.CreateCampaignRequest(request_id="c1", campaign_id=CID, name="cap", rules=rules)
        req.start_time.FromDatetime(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        req.end_time.FromDatetime(dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc))
        await cards.CreateCampaign(req, metadata=admin, timeout=10)

        await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id="s-alice", campaign_id=CID, user_id="alice"), metadata=md, timeout=10)
        code = (await cards.GetInviteCode(cs.GetInviteCodeRequest(campaign_id=CID, user_id="alice"), metadata=md, timeout=10)).invite_code
        rewarded = []
        for invitee in ("bob", "carol", "dave"):
            await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{invitee}", campaign_id=CID, user_id=invitee), metadata=md, timeout=10)
            reply = await cards.AcceptInvite(
                cs.AcceptInviteRequest(request_id=f"i-{invitee}", campaign_id=CID, invitee_user_id=invitee, text=code.code), metadata=md, timeout=10
            )
            rewarded.append(reply.invite.inviter_rewarded)
        listed = (await cards.ListCampaignCards(cs.ListCampaignCardsRequest(campaign_id=CID, page_size=100), metadata=admin, timeout=10)).cards
        alice = sorted(c.source for c in listed if c.user_id == "alice")

    # What the card service did: 1 sign-up card, 2 for bob, the 1 left under the cap for carol,
    # nothing for dave.
    assert rewarded == [True, True, False]
    assert alice == sorted([card_pb2.CARD_SOURCE_SIGNUP] + [card_pb2.CARD_SOURCE_INVITER] * 3)
    assert await run_audit(settings, CID) == []
