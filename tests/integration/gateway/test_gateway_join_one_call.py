"""A Join with a pass-phrase through the real gateway, card and lottery servers (in-process, real
SQLite on tmp_path, port 0) is one card RPC, AcceptInvite(claim_signup), counted by the card
server's own Prometheus counters; and a gateway composing the same Joins the two-call way (as
it did before claim_signup, and still does for an older card service) answers the same."""
from __future__ import annotations

import time

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw
from services.card.invite_code import check_letter
from services.common.auth import internal_metadata
from services.common.errors import InvalidArgument, error_details

from gateway.clients import CallOptions
from gateway.compose import Gateway, scoped_request_id

pytestmark = pytest.mark.timeout(60)
CAMPAIGN = "spring-2026"


@pytest.fixture
async def env(tmp_path, card_lottery_gateway):
    rules = card_pb2.CampaignRules(budget_fen=10**12, signup_grant=1, invitee_grant=1)
    async with card_lottery_gateway(tmp_path, rules) as env:
        await join(env, "host", "warm-up")  # the campaign and today's draw are cached from here on
        yield env


async def join(env, user: str, rid: str, text: str = "") -> gw.JoinResponse:
    return await env.gateway.Join(
        gw.JoinRequest(request_id=rid, pass_phrase_text=text), metadata=env.auth(user), timeout=10
    )


async def wallet_of(env, user: str) -> card_pb2.Wallet:
    reply = await env.card.GetWallet(
        card_service_pb2.GetWalletRequest(campaign_id=CAMPAIGN, user_id=user), metadata=internal_metadata(env.settings),
        timeout=10,
    )
    return reply.wallet


async def phrase_of(env, user: str) -> str:
    return (await wallet_of(env, user)).pass_phrase_text


# Well-formed (so it is looked up and counted as an attempt) but nobody's code.
NOBODY_S = "¥ZZZZZZZZ" + check_letter("ZZZZZZZZ") + "¥"


async def test_a_join_with_a_valid_pass_phrase_is_one_card_rpc(env, card_calls):
    phrase = await phrase_of(env, "host")
    before = card_calls.snapshot()
    joined = await join(env, "bob", "r1", phrase)
    assert card_calls.since(before) == {"AcceptInvite": 1}
    assert joined.newly_joined and joined.invite_accepted and joined.invite_problem == ""
    assert joined.wallet.wallet.invited_by_user_id == "host" and len(joined.wallet.cards) == 1
    # The claim was recorded under the Join's own key: a plain retry of it replays.
    retry = await env.card.ClaimSignupCard(
        card_service_pb2.ClaimSignupCardRequest(
            request_id=scoped_request_id("join", "bob", "r1"), campaign_id=CAMPAIGN, user_id="bob"
        ),
        metadata=internal_metadata(env.settings), timeout=10,
    )
    assert not retry.newly_granted and [c.card_id for c in retry.cards] == [c.card_id for c in joined.wallet.cards]
    before = card_calls.snapshot()
    again = await join(env, "bob", "r1", phrase)
    assert card_calls.since(before) == {"AcceptInvite": 1}
    assert not again.newly_joined and again.invite_accepted and again.wallet == joined.wallet


async def test_a_join_with_a_refused_pass_phrase_still_joins_and_reports_the_problem(env, card_calls):
    own = await phrase_of(env, "host")
    before = card_calls.snapshot()
    joined = await join(env, "host", "r2", own)  # host already joined: its own pass-phrase
    assert card_calls.since(before) == {"AcceptInvite": 1, "ClaimSignupCard": 1}
    assert not joined.newly_joined and not joined.invite_accepted and joined.invite_problem == "SELF_INVITE"
    before = card_calls.snapshot()
    joined = await join(env, "carol", "r1", NOBODY_S)
    calls = card_calls.since(before)
    assert calls == {"AcceptInvite": 1, "ClaimSignupCard": 1}, calls
    assert joined.newly_joined and not joined.invite_accepted and joined.invite_problem == "INVITE_CODE_NOT_FOUND"
    assert len(joined.wallet.cards) == 1 and joined.wallet.wallet.invited_by_user_id == ""


async def test_a_join_without_a_pass_phrase_is_unchanged(env, card_calls):
    before = card_calls.snapshot()
    joined = await join(env, "dave", "r1")
    assert card_calls.since(before) == {"ClaimSignupCard": 1}
    assert joined.newly_joined and not joined.invite_accepted and len(joined.wallet.cards) == 1


async def test_a_family_of_six_joining_through_the_gateway_collects_eleven_cards_one_card_rpc_each(env, card_calls):
    family = [f"member{n}" for n in range(6)]
    await join(env, family[0], "r1")
    before = card_calls.snapshot()
    for inviter, invitee in zip(family, family[1:]):
        joined = await join(env, invitee, "r1", await phrase_of(env, inviter))
        assert joined.newly_joined and joined.invite_accepted
    calls = card_calls.since(before)
    assert calls.get("AcceptInvite") == 5 and "ClaimSignupCard" not in calls
    granted = [(await wallet_of(env, u)).cards_granted for u in family]
    assert granted == [2, 2, 2, 2, 2, 1] and sum(granted) == 11


# --- the same answers as the two-call composition ---------------------------------------------


def plain(reply: gw.JoinResponse) -> gw.JoinResponse:
    """A JoinResponse without what differs between two users (ids, own code)."""
    r = gw.JoinResponse()
    r.CopyFrom(reply)
    w = r.wallet.wallet
    w.user_id = w.invite_code = w.pass_phrase_text = ""
    for c in r.wallet.cards:
        c.card_id = c.user_id = ""
    return r


async def outcome(gateway: Gateway, user: str, rid: str, text: str, o: CallOptions):
    try:
        return plain(await gateway.join(user, rid, text, o))
    except InvalidArgument as exc:
        return ("InvalidArgument", exc.reason, exc.violations)
    except grpc.aio.AioRpcError as err:
        return (err.code(), error_details(err)["reason"])


async def test_one_call_and_two_call_joins_answer_the_same(env, card_calls):
    one = Gateway(card=env.card, catalog=None, order=None, lottery=env.lottery, campaign_id=CAMPAIGN, clock=env.clock)
    two = Gateway(card=env.card, catalog=None, order=None, lottery=env.lottery, campaign_id=CAMPAIGN, clock=env.clock)
    two._two_call_join_until = float("inf")  # as after meeting a card service older than claim_signup
    o = CallOptions(time.monotonic() + 30, tuple(internal_metadata(env.settings)))
    host = await phrase_of(env, "host")
    calls = {}
    for name, gateway in (("one", one), ("two", two)):
        seen = []
        before = card_calls.snapshot()
        u = lambda who: f"{name}-{who}"  # noqa: E731
        seen.append(await outcome(gateway, u("bob"), "r1", host, o))  # a first join
        seen.append(await outcome(gateway, u("bob"), "r1", host, o))  # its replay
        seen.append(await outcome(gateway, u("bob"), "r2", host, o))  # another join of bob's
        await outcome(gateway, u("carol"), "r1", "", o)
        seen.append(await outcome(gateway, u("carol"), "r2", host, o))  # a pass-phrase after signing up
        seen.append(await outcome(gateway, u("dave"), "r1", NOBODY_S, o))  # a wrong code
        seen.append(await outcome(gateway, u("erin"), "r1", "nothing like a code", o))  # no code at all
        seen.append(await outcome(gateway, u("erin"), "r2", host, o))  # the join that follows it
        own = await phrase_of(env, u("erin"))
        seen.append(await outcome(gateway, u("erin"), "r3", own, o))  # its own pass-phrase
        calls[name] = sum(card_calls.since(before).values())
        seen.append([plain(await join(env, u(who), "r9")).wallet for who in ("bob", "carol", "dave", "erin")])
        calls.setdefault(f"{name}-seen", seen)
    assert calls["one-seen"] == calls["two-seen"]
    summary = [
        s if isinstance(s, tuple) else (s.newly_joined, s.invite_accepted, s.invite_problem)
        for s in calls["one-seen"][:8]
    ]
    assert summary[:5] == [
        (True, True, ""), (False, True, ""), (False, True, ""), (False, True, ""),
        (True, False, "INVITE_CODE_NOT_FOUND"),
    ]
    assert summary[5][:2] == ("InvalidArgument", "INVALID_ARGUMENT") and summary[5][2][0][0] == "pass_phrase_text"
    assert summary[6:] == [(False, True, ""), (False, False, "INVITE_ALREADY_ACCEPTED")]
    assert calls["one-seen"][0].wallet.wallet.invited_by_user_id == "host"
    assert calls["one"] < calls["two"], calls
