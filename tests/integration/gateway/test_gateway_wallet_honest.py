"""The wallet view the gateway shows (GetWallet, and the wallet Join answers with) offers no card
and shares a pass-phrase that promises none once the campaign's budget cannot pay for another
card or the campaign has ended; a running campaign with budget left is shown as before."""
from __future__ import annotations

from datetime import datetime

import pytest

from miandan.card.v1 import card_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw

from .conftest import SHANGHAI

pytestmark = pytest.mark.timeout(60)

PROMISE = "复制这段口令，打开App领25元免单卡"
NO_PROMISE = "复制这段口令，打开App参与免单活动"


@pytest.fixture
async def two_card_campaign(tmp_path, card_lottery_gateway):
    rules = card_pb2.CampaignRules(budget_fen=2 * 2_500, signup_grant=1, invitee_grant=1)
    async with card_lottery_gateway(tmp_path, rules) as env:

        class Suite:
            clock = env.clock

            async def join(self, user: str, text: str = "") -> gw.JoinResponse:
                return await env.gateway.Join(
                    gw.JoinRequest(request_id="r1", pass_phrase_text=text), metadata=env.auth(user), timeout=10
                )

            async def wallet(self, user: str) -> card_pb2.Wallet:
                reply = await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=env.auth(user), timeout=10)
                return reply.wallet.wallet

        yield Suite()


async def test_the_join_that_spends_the_budget_and_every_wallet_after_it_promise_no_card(two_card_campaign):
    s = two_card_campaign
    host = (await s.join("host")).wallet.wallet
    # One card left in the budget: one to obtain, and the phrase may still promise it.
    assert (host.cards_obtainable, host.pass_phrase_text) == (1, f"¥{host.invite_code}¥ {PROMISE}")
    last = (await s.join("alice", host.pass_phrase_text)).wallet.wallet  # the budget's last card
    assert last.cards_granted == 1
    assert (last.cards_obtainable, last.pass_phrase_text) == (0, f"¥{last.invite_code}¥ {NO_PROMISE}")
    host = await s.wallet("host")
    assert (host.cards_obtainable, host.pass_phrase_text) == (0, f"¥{host.invite_code}¥ {NO_PROMISE}")
    assert host.invites_made == 1 and host.card_cap == 21


async def test_an_ended_campaign_s_wallet_promises_no_card(two_card_campaign):
    s = two_card_campaign
    await s.join("host")
    s.clock.set(datetime(2028, 1, 1, 0, 1, tzinfo=SHANGHAI))
    host = await s.wallet("host")
    assert host.cards_granted == 1
    assert (host.cards_obtainable, host.pass_phrase_text) == (0, f"¥{host.invite_code}¥ {NO_PROMISE}")
