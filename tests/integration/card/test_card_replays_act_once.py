"""A request_id replayed late (a duplicate delivered after the order moved on) repeats its answer:
it never acts on a reservation a later ReserveCard of the same order made. Real gRPC and SQLite."""
import grpc
import pytest

from miandan.card.v1 import card_pb2
from services.common.errors import error_details

C = "spring"
HELD, CONFIRMED = card_pb2.RESERVATION_STATE_HELD, card_pb2.RESERVATION_STATE_CONFIRMED
AVAILABLE, RESERVED, REDEEMED = card_pb2.CARD_STATE_AVAILABLE, card_pb2.CARD_STATE_RESERVED, card_pb2.CARD_STATE_REDEEMED


async def refused(call, code, reason):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code and error_details(err.value)["reason"] == reason


async def alice_with_one_card(card):
    await card.campaign(C)
    return (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]


async def test_a_replayed_refund_does_not_give_back_the_card_of_the_orders_later_redemption(card):
    granted = await alice_with_one_card(card)
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    first = await card.RefundCard(request_id="f1", order_id="o1")  # cancelled before payment
    assert first.reservation.state == card_pb2.RESERVATION_STATE_RELEASED
    paid = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, redeem=True)
    assert paid.reservation.state == CONFIRMED
    late = await card.RefundCard(request_id="f1", order_id="o1")  # the first refund, delivered again
    assert late.reservation.state == CONFIRMED and not late.returned
    # The card paid for the order once and stays spent: not spendable a second time.
    cards = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert [(c.card_id, c.state) for c in cards] == [(granted.card_id, REDEEMED)]
    await refused(
        card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=1000),
        grpc.StatusCode.FAILED_PRECONDITION, "NO_CARD_AVAILABLE",
    )


async def test_a_replayed_refund_does_not_end_a_later_hold_of_the_order(card):
    await alice_with_one_card(card)
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    await card.RefundCard(request_id="f1", order_id="o1")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    late = await card.RefundCard(request_id="f1", order_id="o1")
    assert late.reservation.state == HELD and late.card.state == RESERVED
    done = await card.ConfirmReservation(order_id="o1")
    assert done.card.state == REDEEMED


async def test_a_replayed_release_does_not_end_a_later_hold_of_the_order(card):
    await alice_with_one_card(card)
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    await card.ReleaseReservation(request_id="rel1", order_id="o1")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    late = await card.ReleaseReservation(request_id="rel1", order_id="o1")
    assert late.reservation.state == HELD and late.card.state == RESERVED
    done = await card.ConfirmReservation(order_id="o1")
    assert done.reservation.state == CONFIRMED and done.card.state == REDEEMED


async def test_a_replayed_reserve_does_not_hold_the_card_again_once_its_hold_was_released(card):
    await alice_with_one_card(card)
    held = await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    assert held.reservation.state == HELD
    await card.ReleaseReservation(order_id="o1")  # the order was cancelled
    # The duplicate of the first ReserveCard must not lock the card for another TTL.
    await refused(
        card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000),
        grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_RELEASED",
    )
    cards = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert [c.state for c in cards] == [AVAILABLE]
    # A new request for the order still takes a new hold (the documented re-reserve).
    again = await card.ReserveCard(request_id="r2", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000)
    assert again.reservation.state == HELD


async def test_a_replayed_reserve_after_its_hold_lapsed_says_so_instead_of_holding_again(card, clock):
    await alice_with_one_card(card)
    await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    clock.advance(61)
    await refused(
        card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60),
        grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED",
    )
    await refused(
        card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, redeem=True),
        grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED",
    )
    cards = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert [c.state for c in cards] == [AVAILABLE]


async def test_a_confirm_retried_after_the_order_held_its_lapsed_card_again_redeems_the_new_hold(card, clock):
    # The order service's recovery of a payment that landed while the hold lapsed: the same key
    # is held again and confirmed under the same request_id (unlike a release or refund, a
    # confirm replay may act on the order's later hold: it only spends the card on that order).
    await alice_with_one_card(card)
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    clock.advance(61)
    await refused(card.ConfirmReservation(request_id="o1:confirm", order_id="o1"), grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_EXPIRED")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60)
    done = await card.ConfirmReservation(request_id="o1:confirm", order_id="o1")
    assert done.reservation.state == CONFIRMED and done.card.state == REDEEMED


async def test_duplicates_of_a_refund_racing_the_orders_redemption_never_give_the_card_back(card):
    import asyncio

    await card.campaign(C)
    users = [f"u{n}" for n in range(20)]
    for u in users:
        await card.ClaimSignupCard(campaign_id=C, user_id=u)
        await card.ReserveCard(campaign_id=C, user_id=u, order_id=f"{u}-o", amount_fen=1000)
        await card.RefundCard(request_id=f"{u}-f", order_id=f"{u}-o")
    calls = []
    for u in users:
        calls.append(card.ReserveCard(campaign_id=C, user_id=u, order_id=f"{u}-o", amount_fen=1000, redeem=True))
        calls += [card.RefundCard(request_id=f"{u}-f", order_id=f"{u}-o") for _ in range(10)]
    await asyncio.gather(*calls)
    for u in users:
        cards = (await card.ListCards(campaign_id=C, user_id=u)).cards
        assert [c.state for c in cards] == [REDEEMED], u
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.redeemed_fen == 2500 * len(users)


async def test_a_batched_replay_of_a_lapsed_hold_is_that_entrys_error(card, clock):
    from miandan.card.v1 import card_service_pb2 as pb

    await alice_with_one_card(card)
    entry = pb.ReserveCardRequest(
        request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1000, ttl_seconds=60
    )
    first = await card.ReserveCards(request_id="b1", reservations=[entry])
    assert first.results[0].reservation.reservation.state == HELD
    clock.advance(61)
    again = await card.ReserveCards(request_id="b2", reservations=[entry])
    assert again.results[0].WhichOneof("outcome") == "error"
    assert again.results[0].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    cards = (await card.ListCards(campaign_id=C, user_id="alice")).cards
    assert [c.state for c in cards] == [AVAILABLE]
