"""ReserveCard without a card_id takes the user's card that expires first, also when that card's
last hold lapsed a moment ago and no sweep has freed it yet: otherwise the later card is spent
and the sooner one expires unused (found by the reference-model test). Real gRPC and SQLite."""
from miandan.card.v1 import card_pb2

C = "spring"
AVAILABLE, RESERVED = card_pb2.CARD_STATE_AVAILABLE, card_pb2.CARD_STATE_RESERVED


async def alice_with_a_card_expiring_tonight_and_one_tomorrow(card, clock):
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    clock.advance(hours=6)
    code = (await card.GetInviteCode(campaign_id=C, user_id="alice")).invite_code.code
    await card.AcceptInvite(campaign_id=C, invitee_user_id="bob", text=code)
    sooner, later = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert sooner.expire_time.seconds < later.expire_time.seconds
    return sooner, later


async def test_a_new_hold_takes_the_soonest_expiring_card_even_right_after_its_last_hold_lapsed(card, clock):
    sooner, later = await alice_with_a_card_expiring_tonight_and_one_tomorrow(card, clock)
    first = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    assert first.card.card_id == sooner.card_id
    clock.advance(61)  # o1 was abandoned: its hold lapsed, the sweep has not run yet
    second = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=1000)
    assert second.card.card_id == sooner.card_id
    cards = {c.card_id: c.state for c in (await card.ListCards(campaign_id=C, user_id="alice")).cards}
    assert cards == {sooner.card_id: RESERVED, later.card_id: AVAILABLE}


async def test_a_batched_redeem_takes_the_soonest_expiring_card_even_right_after_its_last_hold_lapsed(card, clock):
    from miandan.card.v1 import card_service_pb2 as pb

    sooner, _ = await alice_with_a_card_expiring_tonight_and_one_tomorrow(card, clock)
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    clock.advance(61)
    paid = await card.ReserveCards(request_id="b1", reservations=[
        pb.ReserveCardRequest(campaign_id=C, user_id="alice", order_id="o2", amount_fen=1000, redeem=True),
    ])
    assert paid.results[0].reservation.card.card_id == sooner.card_id
