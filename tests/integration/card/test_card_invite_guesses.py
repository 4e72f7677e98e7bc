"""AcceptInvite under the wrong-code limit: guesses beside real codes count, replays still answer."""
import grpc
import pytest

from services.card import invite_code as codes
from services.common.errors import error_details

C = "spring"


async def test_a_replayed_accepted_invite_still_answers_after_wrong_codes_hit_the_limit(card):
    # A user joined with a friend's pass-phrase, then pasted ten well-formed codes that are no
    # one's (old campaigns' pass-phrases in a chat log): the limit now slows down its guesses.
    # Its app retrying the join that succeeded must still get that join back, not "too many
    # wrong codes": a replay is answered with the first answer, and it guesses nothing.
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s-alice", campaign_id=C, user_id="alice")
    phrase = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    first = await card.AcceptInvite(request_id="join-bob", campaign_id=C, invitee_user_id="bob", text=phrase)
    assert first.newly_accepted
    for n in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=codes.code_for(b"old", str(n)))
        assert error_details(err.value)["reason"] == "INVITE_CODE_NOT_FOUND"
    again = await card.AcceptInvite(request_id="join-bob", campaign_id=C, invitee_user_id="bob", text=phrase)
    assert not again.newly_accepted and again.invite == first.invite
    assert list(again.invitee_cards) == list(first.invitee_cards)
    # Another wrong code is still slowed down.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=codes.code_for(b"old", "x"))
    assert error_details(err.value)["reason"] == "INVITE_ATTEMPTS_EXCEEDED"


async def test_a_blocked_user_replaying_its_join_learns_nothing_about_the_other_codes_it_pastes(card):
    # The replay of a blocked user is answered before any other candidate is looked at: pasting
    # its accepted code beside guesses answers the same whether a guess is a real code or not.
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s-alice", campaign_id=C, user_id="alice")
    alice = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    real = (await card.GetInviteCode(campaign_id=C, user_id="zoe")).invite_code.code
    await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=alice)
    for n in range(10):
        with pytest.raises(grpc.aio.AioRpcError):
            await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=codes.code_for(b"old", str(n)))
    with_real = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=f"{real} {alice}")
    with_wrong = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=f"{codes.code_for(b'x', 'y')} {alice}")
    assert with_real == with_wrong and not with_real.newly_accepted
    assert with_real.invite.inviter_user_id == "alice"


async def test_guesses_pasted_beside_ones_own_code_count_as_wrong_codes(card):
    # Own code + a guess: without counting, the answer told a real code (INVITEE_NOT_NEW, or an
    # accepted invite) from a wrong one (SELF_INVITE) as often as the caller liked, around the
    # limit of 10 wrong codes per 10 minutes.
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="carl")
    own = (await card.GetInviteCode(campaign_id=C, user_id="carl")).invite_code.code
    real = (await card.GetInviteCode(campaign_id=C, user_id="zoe")).invite_code.code
    await card.AcceptInvite(campaign_id=C, invitee_user_id="newbie", text=own)  # carl is no longer new
    for n in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(campaign_id=C, invitee_user_id="carl", text=f"{codes.code_for(b'g', str(n))} {own}")
        assert error_details(err.value)["reason"] == "SELF_INVITE"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(campaign_id=C, invitee_user_id="carl", text=f"{real} {own}")
    assert error_details(err.value)["reason"] == "INVITE_ATTEMPTS_EXCEEDED"


async def test_ones_own_pass_phrase_alone_or_beside_a_friends_costs_no_attempt(card, clock):
    # What a pasted chat log holds: one's own pass-phrase, alone or above the friend's.
    await card.campaign(C)
    own = (await card.GetInviteCode(campaign_id=C, user_id="dana")).invite_code.pass_phrase_text
    friend = (await card.GetInviteCode(campaign_id=C, user_id="ed")).invite_code.pass_phrase_text
    for _ in range(12):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(campaign_id=C, invitee_user_id="dana", text=own)
        assert error_details(err.value)["reason"] == "SELF_INVITE"
    accepted = await card.AcceptInvite(campaign_id=C, invitee_user_id="dana", text=f"{own}\n{friend}")
    assert accepted.newly_accepted and accepted.invite.inviter_user_id == "ed"


async def test_a_guess_beside_the_accepted_code_counts_and_the_replay_still_answers(card):
    await card.campaign(C)
    alice = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    real = (await card.GetInviteCode(campaign_id=C, user_id="zoe")).invite_code.code
    first = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=alice)
    for n in range(10):
        # A wrong guess beside the accepted code: the replay answers, and the guess counts.
        again = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=f"{codes.code_for(b'g', str(n))} {alice}")
        assert not again.newly_accepted and again.invite == first.invite
    # Blocked now: the replay still answers, and says nothing about the real code beside it.
    again = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=f"{real} {alice}")
    assert not again.newly_accepted and again.invite == first.invite


async def test_retries_of_one_wrong_code_request_count_one_attempt(card):
    # An app (or the gateway on a dropped connection) retrying the same AcceptInvite request
    # guesses nothing new: the retries answer INVITE_CODE_NOT_FOUND again without each costing
    # the user one of its 10 wrong codes, so ten retries of a typo do not lock it out.
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="s-alice", campaign_id=C, user_id="alice")
    phrase = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    typo = codes.code_for(b"old", "typo")
    for _ in range(12):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(request_id="join-bob-1", campaign_id=C, invitee_user_id="bob", text=typo)
        assert error_details(err.value)["reason"] == "INVITE_CODE_NOT_FOUND"
    joined = await card.AcceptInvite(request_id="join-bob-2", campaign_id=C, invitee_user_id="bob", text=phrase)
    assert joined.newly_accepted


async def test_guesses_sent_while_blocked_are_counted_when_retried_after_the_block(card, clock):
    # A blocked call judges no code, so it counts none. Kept as an answered request, its retry
    # once the block lifted was a "replay" and counted nothing either: a user could queue any
    # number of guesses while blocked (each answered at once, for free) and have every one
    # judged after the ten minutes without a single one counting.
    await card.campaign(C)
    real = (await card.GetInviteCode(campaign_id=C, user_id="zoe")).invite_code.code
    for n in range(10):
        with pytest.raises(grpc.aio.AioRpcError):
            await card.AcceptInvite(campaign_id=C, invitee_user_id="mallory", text=codes.code_for(b"w", str(n)))
    guesses = [(f"g-{n}", codes.code_for(b"g", str(n))) for n in range(10)] + [("g-real", real)]
    for request_id, guess in guesses:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(request_id=request_id, campaign_id=C, invitee_user_id="mallory", text=guess)
        assert error_details(err.value)["reason"] == "INVITE_ATTEMPTS_EXCEEDED"
    clock.advance(minutes=10)
    for request_id, guess in guesses[:10]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(request_id=request_id, campaign_id=C, invitee_user_id="mallory", text=guess)
        assert error_details(err.value)["reason"] == "INVITE_CODE_NOT_FOUND"
    # Ten wrong codes in this window: the eleventh guess waits, even the one that would hit.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(request_id="g-real", campaign_id=C, invitee_user_id="mallory", text=real)
    assert error_details(err.value)["reason"] == "INVITE_ATTEMPTS_EXCEEDED"


async def test_each_wrong_code_of_a_pasted_text_counts_toward_the_limit(card):
    # A text is searched for up to five codes: counted as one wrong code per call, five guesses
    # in each text made the limit of 10 wrong codes per 10 minutes one of 50.
    await card.campaign(C)
    real = (await card.GetInviteCode(campaign_id=C, user_id="zoe")).invite_code.code
    for batch in range(2):
        text = " ".join(codes.code_for(b"g", f"{batch}-{n}") for n in range(5))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await card.AcceptInvite(campaign_id=C, invitee_user_id="mallory", text=text)
        assert error_details(err.value)["reason"] == "INVITE_CODE_NOT_FOUND"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.AcceptInvite(campaign_id=C, invitee_user_id="mallory", text=real)
    assert error_details(err.value)["reason"] == "INVITE_ATTEMPTS_EXCEEDED"
