"""A late duplicate of a release or refund answers the order's later hold as it stands, and a
hold whose TTL has passed stands released: the answer must not call it HELD (found by the
reference-model test). Real gRPC and SQLite, FakeClock."""
from miandan.card.v1 import card_pb2

C = "spring"
HELD, RELEASED = card_pb2.RESERVATION_STATE_HELD, card_pb2.RESERVATION_STATE_RELEASED
AVAILABLE = card_pb2.CARD_STATE_AVAILABLE


async def alice_holds_her_card_again_after_a_release(card, clock):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    await card.ReleaseReservation(request_id="rel1", order_id="o1")
    await card.RefundCard(request_id="f1", order_id="o1")
    again = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    assert again.reservation.state == HELD
    clock.advance(61)  # nobody paid: the later hold lapses


async def test_a_late_release_duplicate_shows_the_later_hold_released_once_its_ttl_passed(card, clock):
    await alice_holds_her_card_again_after_a_release(card, clock)
    late = await card.ReleaseReservation(request_id="rel1", order_id="o1")
    assert late.card.state == AVAILABLE
    assert late.reservation.state == RELEASED  # as every read shows it, not a HELD that already ended
    listed = (await card.ListReservations()).reservations
    assert [r.state for r in listed] == [RELEASED]


async def test_a_late_refund_duplicate_shows_the_later_hold_released_once_its_ttl_passed(card, clock):
    await alice_holds_her_card_again_after_a_release(card, clock)
    late = await card.RefundCard(request_id="f1", order_id="o1")
    assert late.returned and late.card.state == AVAILABLE
    assert late.reservation.state == RELEASED
