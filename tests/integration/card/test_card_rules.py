"""Every card rule end to end: real gRPC server from wiring.build, real SQLite, FakeClock."""
import grpc
import pytest
from google.protobuf import timestamp_pb2

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.common.errors import error_details

C = "spring"


def ts(dt):
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(dt)
    return t


async def fails(call, code, reason=None):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    d = error_details(err.value)
    assert err.value.code() == code, d
    if reason is not None:
        assert d["reason"] == reason, d
    return d


async def joined(card, user, inviter=None):
    """What the gateway's Join does: sign-up card, then the invite if any."""
    await card.ClaimSignupCard(campaign_id=C, user_id=user)
    if inviter is not None:
        code = (await card.GetInviteCode(campaign_id=C, user_id=inviter)).invite_code
        return await card.AcceptInvite(campaign_id=C, invitee_user_id=user, text=code.pass_phrase_text)


# --- campaigns -------------------------------------------------------------------------------


async def test_a_campaign_is_created_with_defaults_and_read_back(card):
    created = await card.campaign(C)
    assert created.rules.card_face_value_fen == 2500 and created.rules.per_user_card_cap == 21
    got = (await card.GetCampaign(campaign_id=C)).campaign
    assert got == created
    assert [c.campaign_id for c in (await card.ListCampaigns()).campaigns] == [C]


async def test_creating_the_same_campaign_again_is_idempotent_but_a_different_one_is_refused(card):
    first = await card.campaign(C)
    assert await card.campaign(C) == first
    await fails(card.campaign(C, per_user_card_cap=30), grpc.StatusCode.ALREADY_EXISTS, "CAMPAIGN_EXISTS")


async def test_campaigns_page_by_id(card):
    for i in range(5):
        await card.campaign(f"c{i}")
    page = await card.ListCampaigns(page_size=2)
    ids = [c.campaign_id for c in page.campaigns]
    while page.next_page_token:
        page = await card.ListCampaigns(page_size=2, page_token=page.next_page_token)
        ids += [c.campaign_id for c in page.campaigns]
    assert ids == [f"c{i}" for i in range(5)]


async def test_admin_rpcs_need_the_admin_credential(card):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=card.md)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


# --- sign-up ---------------------------------------------------------------------------------


async def test_the_signup_card_is_granted_once_and_every_later_call_returns_it(card):
    await card.campaign(C)
    first = await card.ClaimSignupCard(request_id="a", campaign_id=C, user_id="alice")
    again = await card.ClaimSignupCard(request_id="b", campaign_id=C, user_id="alice")
    assert first.newly_granted and not again.newly_granted
    assert [c.card_id for c in first.cards] == [c.card_id for c in again.cards]
    assert first.cards[0].state == card_pb2.CARD_STATE_AVAILABLE and first.cards[0].face_value_fen == 2500
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.issued_fen == 2500 and budget.cards_issued == 1


async def test_grants_outside_the_campaign_window_are_refused(card, clock):
    await card.campaign(C, days=1)
    clock.advance(days=2)
    await fails(card.ClaimSignupCard(campaign_id=C, user_id="late"), grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_NOT_ACTIVE")


async def test_a_grant_past_the_budget_is_refused_with_resource_exhausted(card):
    await card.campaign(C, budget_fen=5000)
    await card.ClaimSignupCard(campaign_id=C, user_id="u1")
    await card.ClaimSignupCard(campaign_id=C, user_id="u2")
    await fails(card.ClaimSignupCard(campaign_id=C, user_id="u3"), grpc.StatusCode.RESOURCE_EXHAUSTED, "CAMPAIGN_BUDGET_EXHAUSTED")
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.issued_fen == 5000 and budget.remaining_fen == 0


async def test_a_reused_request_id_for_another_request_is_refused(card):
    await card.campaign(C)
    await card.ClaimSignupCard(request_id="same", campaign_id=C, user_id="alice")
    await fails(card.ClaimSignupCard(request_id="same", campaign_id=C, user_id="bob"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


# --- invites ---------------------------------------------------------------------------------


async def test_an_invite_gives_both_sides_a_card_and_is_idempotent_per_invitee(card):
    await card.campaign(C)
    await joined(card, "alice")
    accepted = await joined(card, "bob", inviter="alice")
    # Bob's sign-up card of this join is his invitee card: the invite adds none on top.
    assert accepted.newly_accepted and accepted.invite.inviter_rewarded and not accepted.invite.invitee_rewarded
    assert accepted.invitee_not_rewarded_reason == "SIGNUP_CARD_COUNTED"
    assert len(accepted.invitee_cards) == 1 and accepted.invitee_cards[0].source == card_pb2.CARD_SOURCE_SIGNUP
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    replay = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code.lower())
    assert not replay.newly_accepted and replay.invitee_cards[0].card_id == accepted.invitee_cards[0].card_id
    alice = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    assert alice.cards_granted == 2 and alice.invites_made == 1 and alice.spendable_fen == 5000
    assert alice.lottery_progress == 1 and alice.lottery_threshold == 3 and not alice.lottery_qualified
    assert alice.invite_code == code and alice.pass_phrase_text.startswith(f"¥{code}¥")
    bob = (await card.GetWallet(campaign_id=C, user_id="bob")).wallet
    assert bob.invited_by_user_id == "alice" and bob.cards_granted == 1


async def test_an_invite_accepted_before_the_sign_up_is_the_joining_card_and_the_sign_up_adds_none(card):
    await card.campaign(C)
    await joined(card, "alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.pass_phrase_text
    accepted = await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code)
    assert accepted.invite.invitee_rewarded and accepted.invite.inviter_rewarded
    assert [c.source for c in accepted.invitee_cards] == [card_pb2.CARD_SOURCE_INVITEE]
    signup = await card.ClaimSignupCard(campaign_id=C, user_id="bob")
    assert not signup.newly_granted and [c.card_id for c in signup.cards] == [accepted.invitee_cards[0].card_id]
    again = await card.ClaimSignupCard(request_id="later", campaign_id=C, user_id="bob")
    assert not again.newly_granted and [c.card_id for c in again.cards] == [accepted.invitee_cards[0].card_id]
    bob = (await card.GetWallet(campaign_id=C, user_id="bob")).wallet
    assert bob.cards_granted == 1
    assert (await card.GetBudget(campaign_id=C)).budget.cards_issued == 3  # alice 1 + 1, bob 1


@pytest.mark.parametrize("signup_grant,invitee_grant", [(1, 1), (1, 3), (2, 1)])
@pytest.mark.parametrize("invite_first", [False, True])
async def test_a_joiner_ends_with_the_larger_of_the_two_grants_whichever_call_comes_first(
    card, signup_grant, invitee_grant, invite_first
):
    await card.campaign(C, signup_grant=signup_grant, invitee_grant=invitee_grant, per_user_card_cap=10)
    await joined(card, "alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    calls = [
        lambda: card.ClaimSignupCard(campaign_id=C, user_id="bob"),
        lambda: card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code),
    ]
    for call in (calls[::-1] if invite_first else calls):
        await call()
    bob = (await card.GetWallet(campaign_id=C, user_id="bob")).wallet
    assert bob.cards_granted == max(signup_grant, invitee_grant)
    listed = (await card.ListCards(campaign_id=C, user_id="bob")).cards
    assert len(listed) == max(signup_grant, invitee_grant)
    alice = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    assert alice.cards_granted == signup_grant + 1


async def test_a_family_of_six_chained_through_pass_phrases_collects_eleven_cards(card):
    await card.campaign(C)
    family = [f"member{n}" for n in range(6)]
    await joined(card, family[0])
    for inviter, invitee in zip(family, family[1:]):
        await joined(card, invitee, inviter=inviter)
    granted = [(await card.GetWallet(campaign_id=C, user_id=u)).wallet.cards_granted for u in family]
    assert granted == [2, 2, 2, 2, 2, 1] and sum(granted) == 11
    assert (await card.GetBudget(campaign_id=C)).budget.issued_fen == 11 * 2500


async def test_the_invite_code_is_stable_short_and_checked(card):
    await card.campaign(C)
    a = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code
    b = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code
    assert a == b and len(a.code) >= 8 and not set(a.code) & set("0O1IL")
    assert "复制这段口令" in a.pass_phrase_text


async def test_a_user_cannot_accept_its_own_code(card):
    await card.campaign(C)
    await joined(card, "alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="alice", text=code), grpc.StatusCode.FAILED_PRECONDITION, "SELF_INVITE")


async def test_an_old_user_cannot_accept_an_invite(card, clock):
    await card.campaign(C)
    await joined(card, "alice")
    await joined(card, "carol")
    clock.advance(minutes=11)
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="carol", text=code), grpc.StatusCode.FAILED_PRECONDITION, "INVITEE_NOT_NEW")


async def test_an_invitee_accepts_one_invite_only(card):
    await card.campaign(C)
    await joined(card, "alice")
    await joined(card, "dave")
    await joined(card, "bob", inviter="alice")
    code = (await card.GetInviteCode(campaign_id=C, user_id="dave")).invite_code.code
    await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code), grpc.StatusCode.FAILED_PRECONDITION, "INVITE_ALREADY_ACCEPTED")


async def test_a_wrong_code_is_not_found_and_many_wrong_codes_are_slowed_down(card):
    from services.card import invite_code as codes

    await card.campaign(C)
    await joined(card, "alice")
    details = []
    for n in range(10):
        guess = codes.code_for(b"guess", f"g{n}")
        details.append(await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="mallory", text=guess),
                                   grpc.StatusCode.NOT_FOUND, "INVITE_CODE_NOT_FOUND"))
    assert len({d["message"] for d in details}) == 1  # no hint about which codes exist
    real = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    d = await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="mallory", text=real),
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "INVITE_ATTEMPTS_EXCEEDED")
    assert d["retry_after_ms"] and d["retry_after_ms"] > 0


async def test_the_limit_lifts_when_the_window_passes(card, clock):
    from services.card import invite_code as codes

    await card.campaign(C)
    await joined(card, "alice")
    for n in range(10):
        await fails(card.AcceptInvite(campaign_id=C, invitee_user_id="eve", text=codes.code_for(b"x", str(n))), grpc.StatusCode.NOT_FOUND)
    clock.advance(minutes=10)
    real = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    assert (await card.AcceptInvite(campaign_id=C, invitee_user_id="eve", text=real)).newly_accepted


async def test_an_inviter_at_the_cap_still_counts_the_invite_but_gets_no_card(card):
    await card.campaign(C, per_user_card_cap=3)
    await joined(card, "alice")
    results = [await joined(card, f"friend{n}", inviter="alice") for n in range(4)]
    assert [r.invite.inviter_rewarded for r in results] == [True, True, False, False]
    assert results[2].inviter_not_rewarded_reason == "CARD_CAP_REACHED"
    assert all(len(r.invitee_cards) == 1 for r in results)  # each friend holds its joining card
    alice = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    assert alice.cards_granted == 3 and alice.cards_obtainable == 0 and alice.invites_made == 4 and alice.lottery_qualified


async def test_invite_stats_count_before_a_cut_off_and_page(card, clock):
    await card.campaign(C)
    await joined(card, "alice")
    for n in range(3):
        await joined(card, f"early{n}", inviter="alice")
    clock.advance(hours=1)
    cut = clock.now()
    for n in range(2):
        await joined(card, f"late{n}", inviter="alice")
    all_stats = await card.GetInviteStats(campaign_id=C, user_id="alice", page_size=2)
    assert all_stats.invited_count == 5 and all_stats.lottery_qualified and all_stats.lottery_threshold == 3
    names = [i.invitee_user_id for i in all_stats.invites]
    page = all_stats
    while page.next_page_token:
        page = await card.GetInviteStats(campaign_id=C, user_id="alice", page_size=2, page_token=page.next_page_token)
        names += [i.invitee_user_id for i in page.invites]
    assert names == ["early0", "early1", "early2", "late0", "late1"]
    before = await card.GetInviteStats(campaign_id=C, user_id="alice", before_time=ts(cut))
    assert before.invited_count == 3 and [i.invitee_user_id for i in before.invites] == ["early0", "early1", "early2"]


# --- reservations ----------------------------------------------------------------------------


async def test_reserve_picks_the_card_that_expires_first_and_confirm_redeems_it(card, clock):
    await card.campaign(C, card_validity_days=7)
    await joined(card, "alice")
    clock.advance(minutes=1)
    await joined(card, "bob", inviter="alice")  # alice's second card expires a minute later
    first = (await card.ListCards(campaign_id=C, user_id="alice")).cards[0]
    held = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1800)
    assert held.card.card_id == first.card_id and held.card.state == card_pb2.CARD_STATE_RESERVED
    assert held.reservation.covered_fen == 1800 and held.reservation.state == card_pb2.RESERVATION_STATE_HELD
    again = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1800)
    assert again.reservation == held.reservation
    done = await card.ConfirmReservation(order_id="o1")
    assert done.card.state == card_pb2.CARD_STATE_REDEEMED and done.reservation.state == card_pb2.RESERVATION_STATE_CONFIRMED
    assert (await card.ConfirmReservation(order_id="o1")).reservation == done.reservation
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.redeemed_fen == 2500 and budget.reserved_fen == 0


async def test_only_the_owner_can_reserve_a_card(card):
    await card.campaign(C)
    alice_card = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    await card.ClaimSignupCard(campaign_id=C, user_id="bob")
    await fails(card.ReserveCard(campaign_id=C, user_id="bob", order_id="o", amount_fen=100, card_id=alice_card.card_id),
                grpc.StatusCode.PERMISSION_DENIED, "CARD_NOT_OWNED")
    await fails(card.ReserveCard(campaign_id=C, user_id="bob", order_id="o", amount_fen=100, card_id="cdnope"),
                grpc.StatusCode.NOT_FOUND, "CARD_NOT_FOUND")


async def test_a_user_without_cards_gets_no_card_available(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await fails(card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=100),
                grpc.StatusCode.FAILED_PRECONDITION, "NO_CARD_AVAILABLE")
    await fails(card.ReserveCard(campaign_id=C, user_id="nobody", order_id="o3", amount_fen=100),
                grpc.StatusCode.FAILED_PRECONDITION, "NO_CARD_AVAILABLE")


async def test_an_order_id_of_another_user_is_refused(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ClaimSignupCard(campaign_id=C, user_id="bob")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await fails(card.ReserveCard(campaign_id=C, user_id="bob", order_id="o1", amount_fen=100),
                grpc.StatusCode.ALREADY_EXISTS, "ORDER_ID_CONFLICT")


async def test_a_hold_past_its_ttl_frees_the_card_at_the_next_read_and_reserve(card, clock):
    await card.campaign(C)
    signup = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100, ttl_seconds=60)
    clock.advance(61)
    listed = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert listed[0].state == card_pb2.CARD_STATE_AVAILABLE
    assert (await card.GetBudget(campaign_id=C)).budget.reserved_fen == 0
    held = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=100)
    assert held.card.card_id == signup.card_id
    await fails(card.ConfirmReservation(order_id="o1"), grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED")
    causes = [e.cause for e in (await card.GetCardHistory(card_id=signup.card_id)).entries]
    assert causes == ["GRANT_SIGNUP", "RESERVE", "RESERVATION_TIMEOUT", "RESERVE"]


async def test_confirming_a_lapsed_hold_fails_and_frees_the_card(card, clock):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100, ttl_seconds=30)
    clock.advance(31)
    await fails(card.ConfirmReservation(order_id="o1"), grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED")
    card_now = (await card.ListCards(campaign_id=C, user_id="alice")).cards[0]
    assert card_now.state == card_pb2.CARD_STATE_AVAILABLE
    history = (await card.GetCardHistory(card_id=card_now.card_id)).entries
    assert history[-1].cause == "RESERVATION_TIMEOUT" and history[-1].to_state == card_pb2.CARD_STATE_AVAILABLE


async def test_the_background_sweep_releases_holds_and_expires_cards_nobody_touches(card_server, clock):
    server, card, _ = card_server
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    bob_card = (await card.ClaimSignupCard(campaign_id=C, user_id="bob")).cards[0]
    held = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100, ttl_seconds=60)
    clock.advance(61)
    counts = await server.card_store.sweep(int(clock.now().timestamp() * 1000))
    assert counts.released == 1
    clock.advance(days=2)
    counts = await server.card_store.sweep(int(clock.now().timestamp() * 1000))
    assert counts.expired == 2
    for card_id, last in ((held.card.card_id, "EXPIRE"), (bob_card.card_id, "EXPIRE")):
        h = await card.GetCardHistory(card_id=card_id)
        assert h.card.state == card_pb2.CARD_STATE_EXPIRED and h.entries[-1].cause == last
    assert (await card.GetBudget(campaign_id=C)).budget.expired_fen == 5000


async def test_release_frees_the_card_and_is_idempotent(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    r1 = await card.ReleaseReservation(order_id="o1")
    r2 = await card.ReleaseReservation(order_id="o1")
    assert r1.reservation.state == r2.reservation.state == card_pb2.RESERVATION_STATE_RELEASED
    assert r1.card.state == card_pb2.CARD_STATE_AVAILABLE
    await fails(card.ConfirmReservation(order_id="o1"), grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_RELEASED")
    await fails(card.ReleaseReservation(order_id="never"), grpc.StatusCode.NOT_FOUND, "RESERVATION_NOT_FOUND")


async def test_release_after_confirm_returns_the_final_state(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ConfirmReservation(order_id="o1")
    r = await card.ReleaseReservation(order_id="o1")
    assert r.reservation.state == card_pb2.RESERVATION_STATE_CONFIRMED and r.card.state == card_pb2.CARD_STATE_REDEEMED


async def test_a_refund_returns_the_card_and_is_idempotent(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ConfirmReservation(order_id="o1")
    first = await card.RefundCard(order_id="o1")
    second = await card.RefundCard(order_id="o1")
    assert first.returned and second.returned and first.card.state == card_pb2.CARD_STATE_AVAILABLE
    assert first.reservation.state == card_pb2.RESERVATION_STATE_REFUNDED == second.reservation.state
    causes = [e.cause for e in (await card.GetCardHistory(card_id=first.card.card_id)).entries]
    assert causes == ["GRANT_SIGNUP", "RESERVE", "CONFIRM", "REFUND"]
    held = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=100)
    assert held.card.card_id == first.card.card_id


async def test_a_refund_after_the_card_expired_leaves_it_expired_and_says_so(card, clock):
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ConfirmReservation(order_id="o1")
    clock.advance(days=2)
    r = await card.RefundCard(order_id="o1")
    assert not r.returned and r.not_returned_reason == "CARD_EXPIRED" and r.card.state == card_pb2.CARD_STATE_EXPIRED
    assert not (await card.RefundCard(order_id="o1")).returned


async def test_list_cards_filters_by_state_and_pages(card):
    await card.campaign(C)
    await joined(card, "alice")
    for n in range(4):
        await joined(card, f"f{n}", inviter="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    seen = []
    page = await card.ListCards(campaign_id=C, user_id="alice", page_size=2)
    seen += page.cards
    while page.next_page_token:
        page = await card.ListCards(campaign_id=C, user_id="alice", page_size=2, page_token=page.next_page_token)
        seen += page.cards
    assert len(seen) == 5 == len({c.card_id for c in seen})
    reserved = await card.ListCards(campaign_id=C, user_id="alice", state=card_pb2.CARD_STATE_RESERVED)
    assert [c.order_id for c in reserved.cards] == ["o1"]
    wallet = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    totals = {t.state: t.count for t in wallet.totals}
    assert totals[card_pb2.CARD_STATE_AVAILABLE] == 4 and totals[card_pb2.CARD_STATE_RESERVED] == 1
    audit = await card.ListCampaignCards(campaign_id=C, state=card_pb2.CARD_STATE_RESERVED)
    assert len(audit.cards) == 1


async def test_one_request_id_may_serve_reserve_and_confirm_of_the_same_order(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(request_id="order-1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    done = await card.ConfirmReservation(request_id="order-1", order_id="o1")
    assert done.card.state == card_pb2.CARD_STATE_REDEEMED
    await fails(card.ConfirmReservation(request_id="order-1", order_id="o2"), grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")


async def test_the_sweep_forgets_request_ids_after_a_week(card_server, clock):
    server, card, _ = card_server
    await card.campaign(C, days=30)
    await card.ClaimSignupCard(request_id="once", campaign_id=C, user_id="alice")
    clock.advance(days=8)
    await server.card_store.sweep(int(clock.now().timestamp() * 1000))
    # Forgotten, so the id may name a new request now.
    await card.ClaimSignupCard(request_id="once", campaign_id=C, user_id="bob")


async def test_the_ledger_is_append_only(card_server):
    import sqlite3

    server, card, settings = card_server
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    db = sqlite3.connect(settings.db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE ledger SET cause = 'FORGED'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM ledger")
    finally:
        db.close()


async def test_a_released_order_may_reserve_again_and_gets_a_new_hold(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ReleaseReservation(order_id="o1")
    again = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=300)
    assert again.reservation.state == card_pb2.RESERVATION_STATE_HELD and again.reservation.covered_fen == 300
    assert (await card.ConfirmReservation(order_id="o1")).card.state == card_pb2.CARD_STATE_REDEEMED


async def test_the_database_refuses_a_second_hold_on_one_card_whatever_the_code_does(card_server):
    import sqlite3

    server, card, settings = card_server
    await card.campaign(C)
    held = await card.ReserveCard(
        campaign_id=C, user_id="alice", order_id="o1", amount_fen=100,
        card_id=(await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0].card_id,
    )
    db = sqlite3.connect(settings.db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "INSERT INTO reservations (order_id, card_id, user_id, campaign_id, state, amount_fen, covered_fen,"
                " expire_ms, create_ms) VALUES ('o2', ?, 'alice', ?, 1, 1, 1, 1, 1)",
                (held.card.card_id, C),
            )
    finally:
        db.close()


async def test_get_wallet_can_return_the_available_cards_as_list_cards_would(card):
    await card.campaign(C, signup_grant=3, per_user_card_cap=10)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    reply = await card.GetWallet(campaign_id=C, user_id="alice", include_available_cards=True)
    listed = await card.ListCards(campaign_id=C, user_id="alice", state=card_pb2.CARD_STATE_AVAILABLE)
    assert list(reply.available_cards) == list(listed.cards) and len(listed.cards) == 2
    assert not (await card.GetWallet(campaign_id=C, user_id="alice")).available_cards
