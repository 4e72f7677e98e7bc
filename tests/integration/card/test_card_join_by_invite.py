"""AcceptInvite with claim_signup (a Join with a pass-phrase in one card call), against the real
server and SQLite: it leaves exactly what ClaimSignupCard then AcceptInvite leave, replays, keeps
both idempotency records, and when the invite fails it leaves exactly what the failed
AcceptInvite alone leaves. Each comparison runs the two paths in two campaigns of one server."""
import asyncio
from collections import Counter

import grpc
import pytest

from miandan.card.v1 import card_pb2
from services.card import invite_code as codes
from services.common.errors import error_details

ONE, TWO = "one-call", "two-calls"
pytestmark = pytest.mark.timeout(60)


async def phrase_of(card, campaign, user):
    return (await card.GetInviteCode(campaign_id=campaign, user_id=user)).invite_code.pass_phrase_text


async def join_in_one_call(card, campaign, user, text, rid="r1", **kw):
    """What the gateway sends: keys of their own (request ids are service-wide), one for the
    invite and one for the claim."""
    return await card.AcceptInvite(
        request_id=f"invite-{campaign}-{user}-{rid}", campaign_id=campaign, invitee_user_id=user, text=text,
        claim_signup=True, signup_request_id=f"join-{campaign}-{user}-{rid}", **kw,
    )


async def join_in_two_calls(card, campaign, user, text, rid="r1"):
    """What the gateway sent before claim_signup, with the same keys."""
    claim = await card.ClaimSignupCard(request_id=f"join-{campaign}-{user}-{rid}", campaign_id=campaign, user_id=user)
    return claim, await card.AcceptInvite(
        request_id=f"invite-{campaign}-{user}-{rid}", campaign_id=campaign, invitee_user_id=user, text=text
    )


async def state_of(card, campaign, users):
    """Everything a user or an audit can see, without ids and times (which differ per campaign)."""
    seen = {}
    for user in users:
        w = (await card.GetWallet(campaign_id=campaign, user_id=user)).wallet
        cards = (await card.ListCards(campaign_id=campaign, user_id=user, page_size=100)).cards
        ledgers = []
        for c in cards:
            entries = (await card.GetCardHistory(card_id=c.card_id)).entries
            ledgers.append((c.source, c.state, c.face_value_fen, tuple(e.cause for e in entries)))
        stats = await card.GetInviteStats(campaign_id=campaign, user_id=user)
        seen[user] = (
            w.cards_granted, w.invites_made, w.invited_by_user_id, w.spendable_fen, sorted(ledgers),
            stats.invited_count, sorted((i.invitee_user_id, i.inviter_rewarded, i.invitee_rewarded) for i in stats.invites),
        )
    b = (await card.GetBudget(campaign_id=campaign)).budget
    seen["budget"] = (b.issued_fen, b.cards_issued, b.remaining_fen)
    return seen


def accept_view(reply):
    """An AcceptInvite answer without ids and times."""
    i = reply.invite
    return (
        i.inviter_user_id, i.invitee_user_id, i.inviter_rewarded, i.invitee_rewarded,
        reply.inviter_not_rewarded_reason, reply.invitee_not_rewarded_reason, reply.newly_accepted,
        sorted(c.source for c in reply.invitee_cards),
    )


async def two_campaigns(card, **rules):
    for campaign in (ONE, TWO):
        await card.campaign(campaign, **rules)
        await card.ClaimSignupCard(campaign_id=campaign, user_id="alice")


async def failure(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


# --- the same outcome as the two calls -------------------------------------------------------


@pytest.mark.parametrize("signup_grant,invitee_grant", [(1, 1), (1, 3), (2, 1)])
async def test_one_call_leaves_what_claim_then_accept_leave(card, signup_grant, invitee_grant):
    await two_campaigns(card, signup_grant=signup_grant, invitee_grant=invitee_grant, per_user_card_cap=10)
    one = await join_in_one_call(card, ONE, "bob", await phrase_of(card, ONE, "alice"))
    claim, two = await join_in_two_calls(card, TWO, "bob", await phrase_of(card, TWO, "alice"))
    assert one.HasField("signup_claim") and one.signup_claim.newly_granted and claim.newly_granted
    assert [c.source for c in one.signup_claim.cards] == [c.source for c in claim.cards]
    assert accept_view(one) == accept_view(two)
    assert await state_of(card, ONE, ["alice", "bob"]) == await state_of(card, TWO, ["alice", "bob"])
    bob = (await card.GetWallet(campaign_id=ONE, user_id="bob")).wallet
    assert bob.cards_granted == max(signup_grant, invitee_grant) and bob.invited_by_user_id == "alice"


@pytest.mark.parametrize("earlier", ["ClaimSignupCard", "AcceptInvite"])
async def test_one_call_after_either_half_leaves_what_the_two_calls_leave_in_that_order(card, earlier):
    await two_campaigns(card, signup_grant=1, invitee_grant=2, per_user_card_cap=10)
    replies = {}
    for campaign in (ONE, TWO):
        phrase = await phrase_of(card, campaign, "alice")
        if earlier == "ClaimSignupCard":
            await card.ClaimSignupCard(request_id=f"join-{campaign}-0", campaign_id=campaign, user_id="bob")
        else:
            await card.AcceptInvite(request_id=f"invite-{campaign}-0", campaign_id=campaign, invitee_user_id="bob", text=phrase)
        if campaign == ONE:
            replies[campaign] = await join_in_one_call(card, ONE, "bob", phrase)
        else:
            claim, accepted = await join_in_two_calls(card, TWO, "bob", phrase)
            replies[campaign] = (claim, accepted)
    one = replies[ONE]
    claim, two = replies[TWO]
    # The claim grants nothing the second time (and nothing after an invite): newly_granted says so.
    assert not one.signup_claim.newly_granted and not claim.newly_granted
    assert [c.source for c in one.signup_claim.cards] == [c.source for c in claim.cards]
    assert accept_view(one) == accept_view(two)
    assert one.newly_accepted == (earlier == "ClaimSignupCard")
    assert await state_of(card, ONE, ["alice", "bob"]) == await state_of(card, TWO, ["alice", "bob"])
    assert (await card.GetWallet(campaign_id=ONE, user_id="bob")).wallet.cards_granted == 2


async def test_a_family_of_six_joining_in_one_call_each_collects_eleven_cards(card):
    await card.campaign(ONE)
    family = [f"member{n}" for n in range(6)]
    await card.ClaimSignupCard(campaign_id=ONE, user_id=family[0])
    for inviter, invitee in zip(family, family[1:]):
        reply = await join_in_one_call(card, ONE, invitee, await phrase_of(card, ONE, inviter))
        assert reply.signup_claim.newly_granted and reply.newly_accepted
    granted = [(await card.GetWallet(campaign_id=ONE, user_id=u)).wallet.cards_granted for u in family]
    assert granted == [2, 2, 2, 2, 2, 1] and sum(granted) == 11
    assert (await card.GetBudget(campaign_id=ONE)).budget.issued_fen == 11 * 2500


# --- replays and idempotency records ---------------------------------------------------------


async def test_a_replayed_one_call_join_answers_the_same_and_grants_nothing_more(card):
    await card.campaign(ONE)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    first = await join_in_one_call(card, ONE, "bob", phrase, include_wallet=True)
    after_first = await state_of(card, ONE, ["alice", "bob"])
    for rid in ("r1", "r2"):  # the same keys, then new ones (idempotent per invitee as well)
        again = await join_in_one_call(card, ONE, "bob", phrase, rid=rid, include_wallet=True)
        assert not again.newly_accepted and not again.signup_claim.newly_granted
        assert [c.card_id for c in again.signup_claim.cards] == [c.card_id for c in first.signup_claim.cards]
        assert [c.card_id for c in again.invitee_cards] == [c.card_id for c in first.invitee_cards]
        assert again.wallet == first.wallet
    assert await state_of(card, ONE, ["alice", "bob"]) == after_first


async def test_concurrent_duplicates_of_one_join_grant_once(card):
    await card.campaign(ONE)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    replies = await asyncio.gather(*(join_in_one_call(card, ONE, "bob", phrase) for _ in range(20)))
    assert sum(r.signup_claim.newly_granted for r in replies) == 1
    assert sum(r.newly_accepted for r in replies) == 1
    assert len({tuple(c.card_id for c in r.signup_claim.cards) for r in replies}) == 1
    assert (await card.GetWallet(campaign_id=ONE, user_id="bob")).wallet.cards_granted == 1
    assert (await card.GetBudget(campaign_id=ONE)).budget.cards_issued == 3


async def test_the_claim_is_recorded_under_its_own_request_id(card):
    await card.campaign(ONE)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    joined = await join_in_one_call(card, ONE, "bob", phrase)
    # The gateway's plain ClaimSignupCard retry with the join's key replays the claim...
    later = await card.ClaimSignupCard(request_id=f"join-{ONE}-bob-r1", campaign_id=ONE, user_id="bob")
    assert not later.newly_granted and [c.card_id for c in later.cards] == [c.card_id for c in joined.signup_claim.cards]
    # ... while the invite's key names a join: a plain AcceptInvite under it is another request
    # (claim_signup is content), refused rather than answered as the join.
    assert await failure(
        card.AcceptInvite(request_id=f"invite-{ONE}-bob-r1", campaign_id=ONE, invitee_user_id="bob", text=phrase)
    ) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    # Both keys are taken: each names bob's request of its method.
    assert await failure(card.ClaimSignupCard(request_id=f"join-{ONE}-bob-r1", campaign_id=ONE, user_id="carol")) == (
        grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED",
    )
    assert await failure(
        card.AcceptInvite(request_id=f"invite-{ONE}-bob-r1", campaign_id=ONE, invitee_user_id="carol", text=phrase)
    ) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


# --- failures keep nothing of the claim ------------------------------------------------------


def wrong_code(n: int = 0) -> str:
    return codes.code_for(b"nobody", f"guess{n}")


async def set_up_failure(card, campaign, kind):
    """Returns (invitee, text) for an AcceptInvite that fails with `kind`."""
    phrase = await phrase_of(card, campaign, "alice")
    if kind == "INVITE_CODE_NOT_FOUND":
        return "bob", wrong_code()
    if kind == "INVITE_ATTEMPTS_EXCEEDED":
        for n in range(10):
            await failure(card.AcceptInvite(campaign_id=campaign, invitee_user_id="bob", text=wrong_code(n)))
        return "bob", phrase
    if kind == "SELF_INVITE":
        return "alice", phrase
    if kind == "INVITE_ALREADY_ACCEPTED":
        await card.ClaimSignupCard(campaign_id=campaign, user_id="dave")
        await card.AcceptInvite(campaign_id=campaign, invitee_user_id="bob", text=await phrase_of(card, campaign, "dave"))
        return "bob", phrase
    if kind == "INVITEE_NOT_NEW":
        await card.ClaimSignupCard(campaign_id=campaign, user_id="bob")
        return "bob", phrase
    if kind == "INVALID_ARGUMENT":
        return "bob", "no pass-phrase here"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["INVITE_CODE_NOT_FOUND", "INVITE_ATTEMPTS_EXCEEDED", "SELF_INVITE", "INVITE_ALREADY_ACCEPTED",
     "INVITEE_NOT_NEW", "INVALID_ARGUMENT"],
)
async def test_a_failed_invite_leaves_what_the_failed_accept_invite_alone_leaves(card, clock, kind):
    await two_campaigns(card)
    invitee, text = await set_up_failure(card, ONE, kind)
    _, text_two = await set_up_failure(card, TWO, kind)
    if kind == "INVITEE_NOT_NEW":
        clock.advance(minutes=11)  # bob's sign-up is now too old for an invite
    one = await failure(join_in_one_call(card, ONE, invitee, text))
    two = await failure(
        card.AcceptInvite(request_id=f"invite-{TWO}-{invitee}-r1", campaign_id=TWO, invitee_user_id=invitee, text=text_two)
    )
    assert one == two
    assert one[1] == kind  # the reason of a bad field is INVALID_ARGUMENT
    users = ["alice", "bob", "dave"]
    assert await state_of(card, ONE, users) == await state_of(card, TWO, users)
    # The failed call kept no claim record: the caller's own claim with the join key now grants
    # (or replays) exactly as in the two-call sequence.
    one = await card.ClaimSignupCard(request_id=f"join-{ONE}-{invitee}-r1", campaign_id=ONE, user_id=invitee)
    two = await card.ClaimSignupCard(request_id=f"join-{TWO}-{invitee}-r1", campaign_id=TWO, user_id=invitee)
    assert one.newly_granted == two.newly_granted
    assert await state_of(card, ONE, users) == await state_of(card, TWO, users)


async def test_each_failed_one_call_join_counts_exactly_one_wrong_code(card):
    await card.campaign(ONE)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    for n in range(10):
        assert await failure(join_in_one_call(card, ONE, "mallory", wrong_code(n), rid=f"r{n}")) == (
            grpc.StatusCode.NOT_FOUND, "INVITE_CODE_NOT_FOUND",
        )
    code, reason = await failure(join_in_one_call(card, ONE, "mallory", await phrase_of(card, ONE, "alice"), rid="r10"))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "INVITE_ATTEMPTS_EXCEEDED")
    assert (await card.GetWallet(campaign_id=ONE, user_id="mallory")).wallet.cards_granted == 0


async def test_a_claim_that_fails_fails_the_call_and_keeps_nothing(card, clock):
    await card.campaign(ONE, budget_fen=2 * 2500)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    await join_in_one_call(card, ONE, "bob", phrase)  # bob's card + alice's reward: budget spent
    assert await failure(join_in_one_call(card, ONE, "carol", phrase)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED",
    )
    stats = await card.GetInviteStats(campaign_id=ONE, user_id="alice")
    assert stats.invited_count == 1  # carol's invite was not kept without her claim
    assert (await card.GetWallet(campaign_id=ONE, user_id="carol")).wallet.invited_by_user_id == ""


# --- concurrency -----------------------------------------------------------------------------


async def outcomes(calls):
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[error_details(r)["reason"]] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            ok.append(r)
    return ok, reasons


async def test_50_invitees_joining_at_once_with_duplicates_keep_cap_and_counts_exact(card):
    await card.campaign(ONE)  # cap 21: alice's sign-up card + 20 rewards
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    invitees = [f"friend{n}" for n in range(50)]
    calls = []
    for n, user in enumerate(invitees):
        calls += [join_in_one_call(card, ONE, user, phrase) for _ in range(2)]  # a client retrying in flight
        calls.append(join_in_one_call(card, ONE, user, phrase, rid="r2"))  # a second Join of the same user
        if n % 5 == 0:  # the gateway's fallback claim racing the join
            calls.append(card.ClaimSignupCard(request_id=f"join-{ONE}-{user}-r1", campaign_id=ONE, user_id=user))
    ok, reasons = await outcomes(calls)
    assert not reasons and len(ok) == len(calls)
    joins = [r for r in ok if hasattr(r, "signup_claim")]
    assert sum(r.newly_accepted for r in joins) == 50
    claimed = Counter(r.invite.invitee_user_id for r in joins if r.signup_claim.newly_granted)
    plain_claims = sum(r.newly_granted for r in ok if not hasattr(r, "signup_claim"))
    assert sum(claimed.values()) + plain_claims == 50  # each sign-up card granted exactly once
    assert sum(r.invite.inviter_rewarded for r in joins if r.newly_accepted) == 20
    alice = (await card.GetWallet(campaign_id=ONE, user_id="alice")).wallet
    assert alice.cards_granted == 21 and alice.invites_made == 50
    assert (await card.GetInviteStats(campaign_id=ONE, user_id="alice")).invited_count == 50
    for user in invitees:
        w = (await card.GetWallet(campaign_id=ONE, user_id=user)).wallet
        assert (w.cards_granted, w.invited_by_user_id) == (1, "alice")
    budget = (await card.GetBudget(campaign_id=ONE)).budget
    cards = (await card.ListCampaignCards(campaign_id=ONE, page_size=1000)).cards
    assert budget.cards_issued == len(cards) == 1 + 50 + 20
    assert budget.issued_fen == len(cards) * 2500
    assert Counter(c.source for c in cards) == Counter(
        {card_pb2.CARD_SOURCE_SIGNUP: 51, card_pb2.CARD_SOURCE_INVITER: 20}
    )


async def test_joins_at_once_against_a_small_budget_never_keep_an_invite_without_its_claim(card):
    await card.campaign(ONE, budget_fen=31 * 2500)
    await card.ClaimSignupCard(campaign_id=ONE, user_id="alice")
    phrase = await phrase_of(card, ONE, "alice")
    invitees = [f"friend{n}" for n in range(50)]
    ok, reasons = await outcomes(
        [join_in_one_call(card, ONE, u, phrase) for u in invitees for _ in range(2)]
    )
    budget = (await card.GetBudget(campaign_id=ONE)).budget
    cards = (await card.ListCampaignCards(campaign_id=ONE, page_size=1000)).cards
    assert budget.issued_fen == budget.budget_fen == len(cards) * 2500 and budget.cards_issued == len(cards)
    assert set(reasons) <= {"CAMPAIGN_BUDGET_EXHAUSTED"}
    joined = {r.invite.invitee_user_id for r in ok}
    stats = await card.GetInviteStats(campaign_id=ONE, user_id="alice", page_size=100)
    assert {i.invitee_user_id for i in stats.invites} == joined and stats.invited_count == len(joined)
    for user in invitees:
        w = (await card.GetWallet(campaign_id=ONE, user_id=user)).wallet
        # Joined with its sign-up card, or not at all: never an invite without the claim.
        assert (w.cards_granted, w.invited_by_user_id) == ((1, "alice") if user in joined else (0, ""))
    alice = (await card.GetWallet(campaign_id=ONE, user_id="alice")).wallet
    assert alice.cards_granted + len(joined) == len(cards) == 31
