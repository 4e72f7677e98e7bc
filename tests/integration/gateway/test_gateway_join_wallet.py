"""Join through the real gateway, card and lottery servers (in-process, real SQLite on tmp_path,
port 0): the wallet it answers with comes from its last card write and is the very WalletView
the gateway's GetWallet (the path Join used before) shows right after, for a plain join, a
valid pass-phrase, a refused one, and replays, with one card RPC fewer than before."""
from __future__ import annotations

import pytest

from miandan.card.v1 import card_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.card.invite_code import check_letter

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def suite(tmp_path, card_lottery_gateway):
    rules = card_pb2.CampaignRules(budget_fen=10**12, signup_grant=1, invitee_grant=2)
    async with card_lottery_gateway(tmp_path, rules) as env:
        stub = env.gateway

        class Suite:
            def auth(self, user: str) -> tuple:
                return env.auth(user)

            async def join(self, user: str, rid: str, text: str = "") -> gw.JoinResponse:
                return await stub.Join(gw.JoinRequest(request_id=rid, pass_phrase_text=text), metadata=self.auth(user), timeout=10)

            async def wallet(self, user: str):
                return (await stub.GetWallet(gw.GetWalletRequest(), metadata=self.auth(user), timeout=10)).wallet

        s = Suite()
        await s.join("host", "warm-up")  # the campaign and today's draw are cached from here on
        yield s


async def test_a_plain_join_is_one_card_call_and_shows_the_wallet_get_wallet_shows(suite, card_calls):
    before = card_calls.snapshot()
    joined = await suite.join("alice", "r1")
    assert card_calls.since(before) == {"ClaimSignupCard": 1}  # was ClaimSignupCard + GetWallet
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == ""
    assert len(joined.wallet.cards) == 1 and joined.wallet.wallet.cards_granted == 1
    assert joined.wallet == await suite.wallet("alice")


async def test_a_join_with_a_valid_pass_phrase_is_one_card_call_and_counts_the_invite(suite, card_calls):
    phrase = (await suite.wallet("host")).wallet.pass_phrase_text
    before = card_calls.snapshot()
    joined = await suite.join("bob", "r1", phrase)
    assert card_calls.since(before) == {"AcceptInvite": 1}  # claim_signup: was ClaimSignupCard + AcceptInvite
    assert joined.newly_joined and joined.invite_accepted and joined.invite_problem == ""
    assert joined.wallet.wallet.cards_granted == 2 and len(joined.wallet.cards) == 2  # the invitee top-up
    assert joined.wallet.wallet.invited_by_user_id == "host"
    assert joined.wallet == await suite.wallet("bob")
    assert (await suite.wallet("host")).lottery.invites == 1


async def test_a_refused_pass_phrase_still_joins_and_reads_the_wallet_from_the_claim(suite, card_calls):
    before = card_calls.snapshot()
    nobody_s = "ZZZZZZZZ" + check_letter("ZZZZZZZZ")  # well-formed, but no user's code
    joined = await suite.join("carol", "r1", f"¥{nobody_s}¥")
    calls = card_calls.since(before)
    assert calls == {"AcceptInvite": 1, "ClaimSignupCard": 1}, calls  # the claim brings the wallet
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == "INVITE_CODE_NOT_FOUND"
    assert joined.wallet == await suite.wallet("carol")


@pytest.mark.parametrize("with_phrase", [False, True])
async def test_a_replayed_join_answers_with_the_same_wallet(suite, with_phrase, card_calls):
    phrase = (await suite.wallet("host")).wallet.pass_phrase_text if with_phrase else ""
    first = await suite.join("dave", "r1", phrase)
    before = card_calls.snapshot()
    again = await suite.join("dave", "r1", phrase)
    assert sum(card_calls.since(before).values()) == 1
    assert not again.newly_joined and again.invite_accepted == with_phrase
    assert again.wallet == first.wallet == await suite.wallet("dave")
