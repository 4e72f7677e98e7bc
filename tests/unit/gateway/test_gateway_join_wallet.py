"""Join takes the wallet from its last card write (include_wallet) instead of a GetWallet call
after it: one card call fewer, the same JoinResponse. The card service "before" the field is
played by fakes whose writes never return a wallet, which is also the gateway's fallback."""
from __future__ import annotations

import time

import grpc
import pytest

from miandan.lottery.v1 import lottery_pb2
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

PHRASE = "¥K7QM3XPA¥ 复制这段口令"


@pytest.fixture
def legacy(fakes):
    """A second, independent suite of fakes whose card service predates include_wallet."""
    other = type(fakes)()
    other.card.writes_return_wallet = False
    return other


def card_calls(f) -> list[str]:
    return [name for name, _, _ in f.card.calls]


async def join_both(fakes, legacy, user: str, rid: str, text: str):
    new = await fakes.gateway.join(user, rid, text, fakes.options())
    old = await legacy.gateway.join(user, rid, text, legacy.options())
    return new, old


async def test_a_plain_join_answers_the_same_with_one_card_call_fewer(fakes, legacy):
    new, old = await join_both(fakes, legacy, "alice", "r1", "")
    assert new == old and new.newly_joined and [c.card_id for c in new.wallet.cards] == ["c-alice-1"]
    assert sorted(card_calls(legacy)) == ["ClaimSignupCard", "GetCampaign", "GetWallet"]
    assert sorted(card_calls(fakes)) == ["ClaimSignupCard", "GetCampaign"]
    assert fakes.card.requests("ClaimSignupCard")[0].include_wallet


async def test_a_join_with_a_valid_pass_phrase_takes_the_wallet_from_the_invite(fakes, legacy):
    new, old = await join_both(fakes, legacy, "bob", "r1", PHRASE)
    assert new == old and new.invite_accepted and new.invite_problem == ""
    # One card write (AcceptInvite with claim_signup, see test_gateway_join_one_call.py).
    assert sorted(card_calls(fakes)) == ["AcceptInvite", "GetCampaign"]
    assert fakes.card.requests("AcceptInvite")[0].include_wallet


@pytest.mark.parametrize(
    "problem",
    [FailedPrecondition("INVITEE_NOT_NEW", "not new"), NotFound("INVITE_CODE_NOT_FOUND", "no such code")],
)
async def test_an_invite_problem_falls_back_to_get_wallet_and_answers_the_same(fakes, legacy, make_rpc_error, problem):
    for f in (fakes, legacy):
        f.card.fail["AcceptInvite"] = make_rpc_error(problem)
    new, old = await join_both(fakes, legacy, "bob", "r1", PHRASE)
    assert new == old and new.newly_joined and not new.invite_accepted and new.invite_problem == problem.reason
    assert len(new.wallet.cards) == 1
    # The claim after the failed invite brings the wallet; the older card service needs GetWallet.
    assert fakes.card.requests("GetWallet") == [] and fakes.card.requests("ClaimSignupCard")[0].include_wallet
    assert len(legacy.card.requests("GetWallet")) == 1


async def test_a_malformed_pass_phrase_fails_the_join_without_reading_the_wallet(fakes, make_rpc_error):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(InvalidArgument("text", "no pass-phrase found"))
    with pytest.raises(InvalidArgument) as caught:
        await fakes.gateway.join("bob", "r1", "¥12¥", fakes.options())
    assert caught.value.violations[0][0] == "pass_phrase_text"
    assert fakes.card.requests("GetWallet") == []


async def test_a_replayed_join_answers_the_same_as_before(fakes, legacy):
    for text in ("", PHRASE):
        user = "carol" if text else "alice"
        await join_both(fakes, legacy, user, "r1", text)
        fakes.card.calls.clear(), legacy.card.calls.clear()
        new, old = await join_both(fakes, legacy, user, "r1", text)
        assert new == old and not new.newly_joined
        assert card_calls(fakes) == ["AcceptInvite" if text else "ClaimSignupCard"]


async def test_an_upstream_outage_on_the_invite_fails_the_join(fakes, make_rpc_error):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 1000))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert fakes.card.requests("GetWallet") == []


async def test_a_qualified_user_s_join_still_says_whether_it_entered_today(fakes, legacy):
    for f in (fakes, legacy):
        f.card.invites["alice"] = 3
        f.lottery.entries.append(lottery_pb2.Entry(user_id="alice", day="2026-01-28"))
    new, old = await join_both(fakes, legacy, "alice", "r1", "")
    assert new == old and new.wallet.lottery.qualified and new.wallet.lottery.entered_today
    assert len(fakes.lottery.requests("ListMyEntries")) == 1


async def test_the_join_reads_the_draw_alongside_its_card_calls(fakes):
    fakes.card.delay["AcceptInvite"] = 0.2
    fakes.lottery.delay["GetDraw"] = 0.2
    start = time.perf_counter()
    reply = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert time.perf_counter() - start < 0.35  # side by side, not 400 ms
    assert reply.wallet.lottery.day == "2026-01-28"
