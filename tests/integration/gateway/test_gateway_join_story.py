"""The published campaign rules as users live them, through the real gateway, card and lottery
servers (in-process, real SQLite, one FakeClock): a family of six collecting 11 cards, a crowd
of invitees taking their inviter to the 21-card cap, and pass-phrases pasted the way chat apps
mangle them."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cpb
from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(60)

FAMILY = ["dad", "mom", "grandma", "grandpa", "son", "daughter"]


@pytest.fixture
async def suite(tmp_path, card_lottery_gateway):
    async with card_lottery_gateway(tmp_path, card_pb2.CampaignRules(budget_fen=10**12)) as env:

        class Suite:
            clock = env.clock

            async def join(self, user: str, text: str = "", rid: str = "r1") -> gw.JoinResponse:
                return await env.gateway.Join(
                    gw.JoinRequest(request_id=rid, pass_phrase_text=text), metadata=env.auth(user), timeout=20
                )

            async def wallet(self, user: str):
                return (await env.gateway.GetWallet(gw.GetWalletRequest(), metadata=env.auth(user), timeout=10)).wallet

            async def phrase(self, user: str) -> str:
                return (await self.wallet(user)).wallet.pass_phrase_text

            async def budget(self):
                reply = await env.card.GetBudget(cpb.GetBudgetRequest(campaign_id="spring-2026"), metadata=env.admin)
                return reply.budget

        yield Suite()


async def _granted(suite, users) -> int:
    return sum([(await suite.wallet(u)).wallet.cards_granted for u in users])


async def test_a_family_of_six_chained_through_pass_phrases_holds_eleven_cards_and_no_more(suite):
    await suite.join("dad")
    for inviter, joiner in zip(FAMILY, FAMILY[1:]):
        joined = await suite.join(joiner, await suite.phrase(inviter))
        assert joined.newly_joined and joined.invite_accepted, joined.invite_problem
        suite.clock.advance(50)  # six joins within five minutes
    assert await _granted(suite, FAMILY) == 11  # 275 yuan
    # Nobody of the family can be invited twice, nor after inviting: the 11 are all there is.
    again = await suite.join("daughter", await suite.phrase("dad"), rid="r2")
    assert again.invite_problem == "INVITE_ALREADY_ACCEPTED"
    late = await suite.join("mom", await suite.phrase("daughter"), rid="r2")
    assert late.invite_problem in ("INVITE_ALREADY_ACCEPTED", "INVITEE_NOT_NEW")
    assert await _granted(suite, FAMILY) == 11
    assert (await suite.budget()).issued_fen == 11 * 2_500


async def test_twenty_invitees_at_once_take_the_inviter_exactly_to_the_cap_and_the_next_invitee_still_gets_a_card(suite):
    await suite.join("host")
    phrase = await suite.phrase("host")
    crowd = [f"friend-{i}" for i in range(20)]
    joined = await asyncio.gather(*(suite.join(u, phrase) for u in crowd))
    assert all(j.invite_accepted and j.wallet.wallet.cards_granted == 1 for j in joined)
    host = (await suite.wallet("host")).wallet
    assert (host.cards_granted, host.cards_obtainable, host.spendable_fen) == (21, 0, 21 * 2_500)
    one_more = await suite.join("friend-20", phrase)
    assert one_more.invite_accepted and one_more.wallet.wallet.cards_granted == 1
    host = (await suite.wallet("host")).wallet
    assert (host.cards_granted, host.invites_made, host.lottery_qualified) == (21, 21, True)
    # The capped inviter's invite cost the budget nothing.
    assert (await suite.budget()).cards_issued == await _granted(suite, ["host", *crowd, "friend-20"]) == 42


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda c: f"¥{c[:4]}\u00ad{c[4:]}¥ 复制这段口令", id="soft-hyphen-inside"),
        pytest.param(lambda c: f"¥{c[:5]}\u200e{c[5:]}¥ 复制这段口令", id="left-to-right-mark-inside"),
        pytest.param(lambda c: f"\u202a{c[:3]}\u202c\u202a{c[3:]}\u202c", id="android-embedding-per-run"),
        pytest.param(lambda c: f"快来 {c[:4]}\u2066{c[4:]}\u2069 领卡", id="isolate-inside-a-sentence"),
    ],
)
async def test_a_pass_phrase_with_invisible_characters_inside_its_code_is_accepted(suite, mangle):
    await suite.join("host")
    code = (await suite.wallet("host")).wallet.invite_code
    joined = await suite.join("guest", mangle(code))
    assert joined.invite_accepted and joined.invite_problem == ""
    assert (await suite.wallet("host")).wallet.invites_made == 1


async def test_a_pasted_chat_holding_the_users_own_pass_phrase_above_a_friends_accepts_the_friends(suite):
    await suite.join("aunt")
    await suite.wallet("niece")  # opening the wallet gives the niece her own pass-phrase to share
    chat = f"我: {await suite.phrase('niece')}\n阿姨: {await suite.phrase('aunt')}"
    joined = await suite.join("niece", chat)
    assert joined.invite_accepted and joined.invite_problem == ""
    assert joined.wallet.wallet.invited_by_user_id == "aunt"


async def test_the_users_own_pass_phrase_alone_is_refused_as_self_invite_and_the_user_still_joins(suite):
    own = await suite.phrase("loner")
    joined = await suite.join("loner", own)
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == "SELF_INVITE"
    assert joined.wallet.wallet.cards_granted == 1


async def test_a_user_whose_shared_phrase_filled_its_wallet_before_it_joined_still_joins(suite):
    phrase = await suite.phrase("sharer")  # opened the wallet, shared the phrase, never joined
    # 21 friends' invites fill the sharer's wallet (one card each) before the sharer joins.
    await asyncio.gather(*(suite.join(f"pal-{i}", phrase) for i in range(21)))
    assert (await suite.wallet("sharer")).wallet.cards_granted == 21
    for rid in ("j1", "j2"):  # and again: joining never fails for good
        joined = await suite.join("sharer", rid=rid)
        assert not joined.newly_joined and joined.wallet.wallet.cards_granted == 21
    assert (await suite.budget()).cards_issued == 21 + 21


async def test_a_long_paste_is_measured_in_bytes_as_the_card_service_measures_it(suite):
    await suite.join("poster")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await suite.join("reader", "免" * 1_400)  # 1,400 characters, 4,200 bytes
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value)["violations"][0][0] == "pass_phrase_text"
