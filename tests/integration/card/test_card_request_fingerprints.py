"""ReserveCard's request fingerprint holds ttl_seconds, AcceptInvite's holds claim_signup (and
the claim's signup_request_id): the same request_id with another of them is ALREADY_EXISTS
REQUEST_ID_REUSED, not answered with the first call's hold or invite. Records written before
the fields were fingerprinted (the old "a|b|c" text, kept a week) still answer a retry as a
replay. Real server from wiring.build over SQLite (conftest.py)."""
import asyncio
import sqlite3
from collections import Counter

import grpc
import pytest

from miandan.card.v1 import card_pb2
from services.card import invite_code as codes
from services.common.errors import error_details

pytestmark = pytest.mark.timeout(60)

C = "spring"
REUSED = (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_details(err.value)["reason"]


def reserve(card, rid, *, order="o1", user="u1", amount=1_500, ttl=60, redeem=False):
    return card.ReserveCard(
        request_id=rid, campaign_id=C, user_id=user, order_id=order, amount_fen=amount, ttl_seconds=ttl, redeem=redeem
    )


def accept(card, rid, text, *, user="bob", claim=False, signup_rid=""):
    return card.AcceptInvite(
        request_id=rid, campaign_id=C, invitee_user_id=user, text=text, claim_signup=claim,
        signup_request_id=signup_rid if claim else "",
    )


async def phrase_of(card, user):
    await card.ClaimSignupCard(request_id=f"signup-{user}", campaign_id=C, user_id=user)
    return (await card.GetInviteCode(campaign_id=C, user_id=user)).invite_code.pass_phrase_text


def set_fingerprint(settings, method, request_id, fingerprint):
    """Rewrite a record as the previous version wrote it (the server keeps no request in memory)."""
    raw = sqlite3.connect(settings.db_path)
    try:
        with raw:
            changed = raw.execute(
                "UPDATE requests SET fingerprint = ? WHERE method = ? AND request_id = ?", (fingerprint, method, request_id)
            ).rowcount
        assert changed == 1
    finally:
        raw.close()


# --- ReserveCard: ttl_seconds ------------------------------------------------------------------


async def test_same_request_id_with_another_ttl_is_refused_and_the_hold_keeps_its_expiry(card):
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s1", campaign_id=C, user_id="u1")
    first = await reserve(card, "R", ttl=60)
    assert await refused(reserve(card, "R", ttl=600)) == REUSED
    assert await refused(reserve(card, "R", ttl=0)) == REUSED  # the campaign's 900 s is another ttl
    again = await reserve(card, "R", ttl=60)
    assert again.reservation == first.reservation
    # A zero ttl and the campaign's default are the same request.
    await card.ClaimSignupCard(request_id="s2", campaign_id=C, user_id="u2")
    held = await reserve(card, "R2", user="u2", order="o2", ttl=0)
    assert (await reserve(card, "R2", user="u2", order="o2", ttl=900)).reservation == held.reservation


async def test_a_hold_and_then_its_redeem_under_one_request_id_need_not_repeat_the_ttl(card):
    """redeem is no content (store._reserve); a redeem holds nothing, so neither is its ttl."""
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s1", campaign_id=C, user_id="u1")
    await reserve(card, "R", ttl=60)
    redeemed = await reserve(card, "R", ttl=0, redeem=True)
    assert redeemed.reservation.state == card_pb2.RESERVATION_STATE_CONFIRMED  # the hold was confirmed
    # The key still names the hold as first asked: a plain retry replays it with its own ttl only.
    assert (await reserve(card, "R", ttl=60)).reservation == redeemed.reservation
    assert await refused(reserve(card, "R", ttl=300)) == REUSED
    # Other content is still refused, redeem or not.
    assert await refused(reserve(card, "R", amount=1_000, redeem=True)) == REUSED
    # A key first used by a redeem names no ttl: a plain retry of it replays whatever its ttl.
    await card.ClaimSignupCard(request_id="s2", campaign_id=C, user_id="u2")
    direct = await reserve(card, "R2", user="u2", order="o2", ttl=0, redeem=True)
    assert direct.reservation.state == card_pb2.RESERVATION_STATE_CONFIRMED
    for ttl in (60, 300):
        assert (await reserve(card, "R2", user="u2", order="o2", ttl=ttl)).reservation == direct.reservation


async def test_twenty_concurrent_reserves_with_one_request_id_and_mixed_ttls(card):
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s1", campaign_id=C, user_id="u1")
    ttls = [60, 120, 300, 0]
    results = await asyncio.gather(*(reserve(card, "R", ttl=ttls[i % 4]) for i in range(20)), return_exceptions=True)
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[(r.code(), error_details(r)["reason"])] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r.reservation)
    assert set(reasons) == {REUSED}, reasons
    assert len(answers) == 5 and sum(reasons.values()) == 15
    # Exactly one content won: every success is the same hold, with that call's ttl.
    assert all(a == answers[0] for a in answers)
    won = answers[0].expire_time.ToSeconds() - answers[0].create_time.ToSeconds()
    assert won in (60, 120, 300, 900)
    assert (await reserve(card, "R", ttl=won)).reservation == answers[0]


# --- AcceptInvite: claim_signup ----------------------------------------------------------------


async def test_same_request_id_with_claim_signup_flipped_is_refused(card):
    await card.campaign(C)
    text = await phrase_of(card, "alice")
    first = await accept(card, "I", text, claim=True, signup_rid="J")
    assert first.HasField("signup_claim") and first.signup_claim.newly_granted
    assert await refused(accept(card, "I", text)) == REUSED
    assert await refused(accept(card, "I", text, claim=True, signup_rid="J2")) == REUSED
    again = await accept(card, "I", text, claim=True, signup_rid="J")
    assert (again.invite, again.HasField("signup_claim")) == (first.invite, True)
    # And the other way round: a lone accept's key cannot be replayed as a join.
    await card.ClaimSignupCard(request_id="signup-carol", campaign_id=C, user_id="carol")
    lone = await accept(card, "I-carol", text, user="carol")
    assert not lone.HasField("signup_claim")
    assert await refused(accept(card, "I-carol", text, user="carol", claim=True, signup_rid="J-carol")) == REUSED
    assert (await accept(card, "I-carol", text, user="carol")).invite == lone.invite


async def test_twenty_concurrent_accepts_with_one_request_id_and_mixed_claim_signup(card):
    await card.campaign(C)
    text = await phrase_of(card, "alice")
    results = await asyncio.gather(
        *(accept(card, "I", text, claim=bool(i % 2), signup_rid="J") for i in range(20)), return_exceptions=True
    )
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[(r.code(), error_details(r)["reason"])] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r)
    assert set(reasons) == {REUSED}, reasons
    assert len(answers) == 10 and sum(reasons.values()) == 10
    claimed = {a.HasField("signup_claim") for a in answers}
    assert len(claimed) == 1  # one content won: every success is a join, or every one a lone accept
    assert all(a.invite == answers[0].invite for a in answers)
    wallet = (await card.GetWallet(campaign_id=C, user_id="bob")).wallet
    assert wallet.invited_by_user_id == "alice" and wallet.cards_granted == 1


# --- records written before the fields were fingerprinted --------------------------------------


async def test_records_of_the_previous_version_still_answer_retries_as_replays(card_server):
    _, card, settings = card_server
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s1", campaign_id=C, user_id="u1")
    await card.ClaimSignupCard(request_id="s2", campaign_id=C, user_id="u2")
    text = await phrase_of(card, "alice")
    held = await reserve(card, "R-old", ttl=60)
    joined = await accept(card, "I-old", text, claim=True, signup_rid="J-old")
    # As the previous version wrote them: no ttl, no claim_signup.
    set_fingerprint(settings, "ReserveCard", "R-old", f"{C}|u1|o1|1500|")
    set_fingerprint(settings, "AcceptInvite", "I-old", f"{C}|bob|{','.join(codes.extract_codes(text))}")

    # The old record cannot tell the new fields: a retry across the upgrade is a replay...
    for ttl in (60, 600):
        assert (await reserve(card, "R-old", ttl=ttl)).reservation == held.reservation
    again = await accept(card, "I-old", text, claim=True, signup_rid="J-old")
    assert again.invite == joined.invite and again.HasField("signup_claim")
    assert (await accept(card, "I-old", text)).invite == joined.invite
    # ...and what it does hold is still compared.
    assert await refused(reserve(card, "R-old", amount=1_000)) == REUSED
    assert await refused(reserve(card, "R-old", order="o9")) == REUSED
    # Records written from now on hold the new fields.
    await reserve(card, "R-new", user="u2", order="o2", ttl=60)
    assert await refused(reserve(card, "R-new", user="u2", order="o2", ttl=600)) == REUSED
