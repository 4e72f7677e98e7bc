"""ReleaseReservation, RefundCard, ConfirmReservation and ReserveCard answer with the card as it
is at the call, like every read of the service (Card.at): a replay or a refund after a release
must not show a card that expired since as AVAILABLE, nor a lapsed hold of another order as
RESERVED."""
from miandan.card.v1 import card_pb2

C = "spring"


async def test_a_refund_after_a_release_of_a_card_that_expired_since_shows_it_expired(card, clock):
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ReleaseReservation(order_id="o1")
    clock.advance(days=2)
    r = await card.RefundCard(order_id="o1")
    assert not r.returned and r.not_returned_reason == "CARD_EXPIRED"
    # Before the fix: the stored state, CARD_STATE_AVAILABLE, beside "not returned: expired".
    assert r.card.state == card_pb2.CARD_STATE_EXPIRED


async def test_a_replayed_release_shows_the_card_expired_once_it_has(card, clock):
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    first = await card.ReleaseReservation(order_id="o1")
    assert first.card.state == card_pb2.CARD_STATE_AVAILABLE
    clock.advance(days=2)
    again = await card.ReleaseReservation(order_id="o1")
    assert again.reservation.state == card_pb2.RESERVATION_STATE_RELEASED
    assert again.card.state == card_pb2.CARD_STATE_EXPIRED
    listed = (await card.ListCards(campaign_id=C, user_id="alice")).cards[0]
    assert listed.state == again.card.state


async def test_a_replayed_release_does_not_show_a_lapsed_hold_of_another_order(card, clock):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100)
    await card.ReleaseReservation(order_id="o1")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=100, ttl_seconds=30)
    clock.advance(31)
    again = await card.ReleaseReservation(order_id="o1")
    assert again.card.state == card_pb2.CARD_STATE_AVAILABLE
    assert again.card.order_id == "" and not again.card.HasField("reserved_until_time")


async def test_a_replayed_reserve_of_a_refunded_order_shows_the_card_as_of_now(card, clock):
    await card.campaign(C, card_validity_days=1)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100, redeem=True)
    refunded = await card.RefundCard(order_id="o1")
    assert refunded.returned and refunded.card.state == card_pb2.CARD_STATE_AVAILABLE
    clock.advance(days=2)
    again = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=100, redeem=True)
    assert again.reservation.state == card_pb2.RESERVATION_STATE_REFUNDED
    assert again.card.state == card_pb2.CARD_STATE_EXPIRED
    replay = await card.RefundCard(order_id="o1")
    assert replay.card.state == card_pb2.CARD_STATE_EXPIRED
