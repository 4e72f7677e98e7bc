"""A Join with a pass-phrase is one card call: AcceptInvite(claim_signup) claims the sign-up card
and accepts the invite in one card transaction. When the invite fails the gateway claims on its
own (the failed call kept nothing of the claim) and answers as before; a card service older than
claim_signup (no signup_claim in its answer) gets the two calls."""
from __future__ import annotations

import grpc
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable

from gateway.compose import scoped_request_id

PHRASE = "¥K7QM3XPA¥ 复制这段口令"


def writes(f) -> list[str]:
    """Card calls but the campaign read (cached, and not part of the join)."""
    return [name for name, _, _ in f.card.calls if name != "GetCampaign"]


@pytest.fixture
def older(fakes):
    """Another suite of fakes whose card service ignores claim_signup (it has include_wallet)."""
    other = type(fakes)()
    other.card.claims_signup_in_invite = False
    return other


async def test_a_join_with_a_valid_pass_phrase_is_one_card_call(fakes):
    reply = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert writes(fakes) == ["AcceptInvite"]
    (sent,) = fakes.card.requests("AcceptInvite")
    assert sent.claim_signup and sent.include_wallet and sent.text == PHRASE
    assert sent.signup_request_id == scoped_request_id("join", "bob", "r1")
    assert sent.request_id == scoped_request_id("invite", "bob", "r1")
    assert reply.newly_joined and reply.invite_accepted and reply.invite_problem == ""
    assert [c.card_id for c in reply.wallet.cards] == ["c-bob-1"]


async def test_it_answers_what_the_two_calls_answer_on_a_first_join_and_a_replay(fakes, older):
    for attempt in range(2):
        new = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
        old = await older.gateway.join("bob", "r1", PHRASE, older.options())
        assert new == old and new.newly_joined == (attempt == 0) and new.invite_accepted


async def test_a_join_without_a_pass_phrase_is_the_claim_alone(fakes):
    reply = await fakes.gateway.join("alice", "r1", "  ", fakes.options())
    assert writes(fakes) == ["ClaimSignupCard"]
    (sent,) = fakes.card.requests("ClaimSignupCard")
    assert sent.include_wallet and sent.request_id == scoped_request_id("join", "alice", "r1")
    assert reply.newly_joined and not reply.invite_accepted and reply.invite_problem == ""


@pytest.mark.parametrize(
    "problem",
    [
        NotFound("INVITE_CODE_NOT_FOUND", "no such code"),
        FailedPrecondition("SELF_INVITE", "own code"),
        FailedPrecondition("INVITEE_NOT_NEW", "not new"),
        FailedPrecondition("INVITE_ALREADY_ACCEPTED", "another one"),
        ResourceExhausted("INVITE_ATTEMPTS_EXCEEDED", "slow down", 60_000),
    ],
)
async def test_a_refused_pass_phrase_still_joins_with_the_claim_and_reports_the_problem(fakes, make_rpc_error, problem):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(problem)
    reply = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert writes(fakes) == ["AcceptInvite", "ClaimSignupCard"]
    (claim,) = fakes.card.requests("ClaimSignupCard")
    assert claim.include_wallet and claim.request_id == scoped_request_id("join", "bob", "r1")
    assert reply.newly_joined and not reply.invite_accepted and reply.invite_problem == problem.reason
    assert [c.card_id for c in reply.wallet.cards] == ["c-bob-1"]


async def test_a_malformed_pass_phrase_claims_then_fails_the_join_as_before(fakes, make_rpc_error):
    fakes.card.fail["AcceptInvite"] = make_rpc_error(InvalidArgument("text", "no invite code found"))
    with pytest.raises(InvalidArgument) as caught:
        await fakes.gateway.join("bob", "r1", "¥12¥", fakes.options())
    assert caught.value.violations[0] == ("pass_phrase_text", "no invite code found")
    # The sign-up card is granted as it was when the claim came first; no wallet is read.
    assert writes(fakes) == ["AcceptInvite", "ClaimSignupCard"]
    assert not fakes.card.requests("ClaimSignupCard")[0].include_wallet
    assert fakes.card.cards["bob"]


async def test_a_claim_that_fails_fails_the_join_with_the_claim_s_error(fakes, make_rpc_error):
    refusal = make_rpc_error(FailedPrecondition("CAMPAIGN_NOT_ACTIVE", "over"))
    fakes.card.fail["AcceptInvite"] = refusal  # the claim half of the one call failed
    fakes.card.fail["ClaimSignupCard"] = refusal  # and so does the claim on its own
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert writes(fakes) == ["AcceptInvite", "ClaimSignupCard"]


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_an_outage_on_the_one_call_fails_the_join_without_a_second_call(fakes, make_rpc_error, code):
    if code == grpc.StatusCode.UNAVAILABLE:
        fakes.card.fail["AcceptInvite"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 100))
    else:
        fakes.card.fail["AcceptInvite"] = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "late")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert caught.value.code() == code and writes(fakes) == ["AcceptInvite"]


async def test_an_older_card_service_gets_the_claim_after_the_invite_then_two_calls_per_join(fakes, older):
    reply = await older.gateway.join("bob", "r1", PHRASE, older.options())
    assert writes(older) == ["AcceptInvite", "ClaimSignupCard"]
    assert reply.newly_joined and reply.invite_accepted
    older.card.calls.clear()
    reply = await older.gateway.join("carol", "r1", PHRASE, older.options())
    assert writes(older) == ["ClaimSignupCard", "AcceptInvite"]  # today's order, remembered
    assert not older.card.requests("AcceptInvite")[0].claim_signup
    assert reply == await fakes.gateway.join("carol", "r1", PHRASE, fakes.options())
    # The card service may have been upgraded meanwhile: tried again after a while.
    older.card.claims_signup_in_invite = True
    older.clock.advance(seconds=older.gateway.JOIN_PROBE_S + 1)
    older.card.calls.clear()
    await older.gateway.join("dave", "r1", PHRASE, older.options())
    assert writes(older) == ["AcceptInvite"] and older.card.requests("AcceptInvite")[0].claim_signup


async def test_on_an_older_card_service_a_user_who_signed_up_before_is_not_newly_joined(older):
    """The invite came first there: newly joined is read from the invite's joining cards."""
    plain_accept = older.card.AcceptInvite

    async def accept_counting_the_sign_up(request, **kw):
        reply = await plain_accept(request, **kw)
        reply.invitee_cards.extend(older.card.cards.get(request.invitee_user_id, []))
        return reply

    older.card.AcceptInvite = accept_counting_the_sign_up
    await older.gateway.join("erin", "r0", "", older.options())
    reply = await older.gateway.join("erin", "r1", PHRASE, older.options())
    assert not reply.newly_joined and reply.invite_accepted
    reply = await older.gateway.join("frank", "r1", PHRASE, older.options())
    assert reply.newly_joined  # (two-call path from here on; the claim says so itself)


async def test_a_card_service_older_than_include_wallet_reads_the_wallet_after_the_claim(fakes, make_rpc_error):
    fakes.card.writes_return_wallet = False
    fakes.card.fail["AcceptInvite"] = make_rpc_error(NotFound("INVITE_CODE_NOT_FOUND", "no such code"))
    reply = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert writes(fakes) == ["AcceptInvite", "ClaimSignupCard", "GetWallet"]
    assert reply.newly_joined and reply.invite_problem == "INVITE_CODE_NOT_FOUND" and len(reply.wallet.cards) == 1


async def test_the_one_call_answer_without_a_wallet_reads_it(fakes):
    plain_accept = fakes.card.AcceptInvite

    async def accept_without_wallet(request, **kw):
        reply = await plain_accept(request, **kw)
        reply.ClearField("wallet")
        return reply

    fakes.card.AcceptInvite = accept_without_wallet
    reply = await fakes.gateway.join("bob", "r1", PHRASE, fakes.options())
    assert writes(fakes) == ["AcceptInvite", "GetWallet"]
    assert reply.newly_joined and [c.card_id for c in reply.wallet.cards] == ["c-bob-1"]
