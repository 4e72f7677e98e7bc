"""What a replayed request (its request_id already answered) may still act on."""
from services.card.model import (
    RELEASE,
    RESERVATION_EXPIRED,
    RESERVATION_RELEASED,
    Reservation,
    ReservationState,
    made_after_replayed_request,
    replayed_reserve_error,
)

S = ReservationState


def reservation(state, expire_ms=1_000, end_cause=""):
    return Reservation("o1", "k1", "alice", "c", state, 900, 900, expire_ms, end_cause)


def test_a_replayed_release_leaves_alone_only_a_hold_made_after_it():
    assert made_after_replayed_request(S.HELD)
    assert not any(made_after_replayed_request(s) for s in (S.CONFIRMED, S.RELEASED, S.REFUNDED))


def test_a_replayed_refund_also_leaves_alone_a_later_redemption_of_the_order():
    assert made_after_replayed_request(S.HELD, refund=True)
    assert made_after_replayed_request(S.CONFIRMED, refund=True)
    assert not made_after_replayed_request(S.REFUNDED, refund=True)
    assert not made_after_replayed_request(S.RELEASED, refund=True)


def test_a_replayed_reserve_answers_the_end_of_its_hold_instead_of_holding_again():
    assert replayed_reserve_error(reservation(S.RELEASED, end_cause=RELEASE), 500).reason == RESERVATION_RELEASED
    assert replayed_reserve_error(reservation(S.HELD, expire_ms=1_000), 1_000).reason == RESERVATION_EXPIRED
    assert replayed_reserve_error(reservation(S.HELD, expire_ms=1_000), 999) is None
    assert replayed_reserve_error(reservation(S.CONFIRMED), 5_000) is None
    assert replayed_reserve_error(reservation(S.REFUNDED), 5_000) is None
