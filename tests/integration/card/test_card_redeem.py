"""ReserveCard(redeem): hold and redeem in one transaction, over real gRPC and SQLite."""
import asyncio
from collections import Counter

import grpc
import pytest

from miandan.card.v1 import card_pb2
from services.common.errors import error_details

C = "spring"
CONFIRMED = card_pb2.RESERVATION_STATE_CONFIRMED
REDEEMED = card_pb2.CARD_STATE_REDEEMED


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


async def history(card, card_id):
    return (await card.GetCardHistory(card_id=card_id)).entries


def assert_ledger_explains(entries, state):
    """Replaying the ledger from nothing ends in the card's state: every row starts where the
    previous one ended."""
    at = card_pb2.CARD_STATE_UNSPECIFIED
    for e in entries:
        assert e.from_state == at, entries
        at = e.to_state
    assert at == state


async def test_redeem_holds_and_redeems_the_card_in_one_call(card):
    await card.campaign(C)
    granted = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    r = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=1800, redeem=True)
    assert r.reservation.state == CONFIRMED and r.reservation.covered_fen == 1800
    assert r.card.card_id == granted.card_id and r.card.state == REDEEMED and r.card.order_id == "o1"
    entries = await history(card, granted.card_id)
    assert [e.cause for e in entries] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]
    assert all(e.order_id == "o1" for e in entries[1:])
    assert_ledger_explains(entries, REDEEMED)
    budget = (await card.GetBudget(campaign_id=C)).budget
    assert budget.redeemed_fen == 2500 and budget.reserved_fen == 0
    # Confirm after it is a harmless replay: the order path may still send it.
    confirmed = await card.ConfirmReservation(order_id="o1")
    assert confirmed.reservation.state == CONFIRMED and confirmed.card.state == REDEEMED


async def test_a_replayed_redeem_returns_the_same_confirmed_reservation(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    first = await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=900, redeem=True)
    again = await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=900, redeem=True)
    other_id = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=900, redeem=True)
    assert first == again == other_id
    assert [e.cause for e in await history(card, first.card.card_id)].count("CONFIRM") == 1


async def test_redeem_on_an_order_with_a_live_plain_hold_confirms_that_hold(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    held = await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=900)
    assert held.reservation.state == card_pb2.RESERVATION_STATE_HELD
    # The same request_id serves both: redeem is not part of what the id names.
    redeemed = await card.ReserveCard(request_id="r1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=900, redeem=True)
    assert redeemed.reservation.state == CONFIRMED and redeemed.card.card_id == held.card.card_id
    assert redeemed.card.state == REDEEMED
    assert [e.cause for e in await history(card, held.card.card_id)] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]


async def test_a_refund_returns_a_redeemed_card_as_for_any_confirmed_reservation(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    r = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=2500, redeem=True)
    refund = await card.RefundCard(order_id="o1")
    assert refund.returned and refund.card.state == card_pb2.CARD_STATE_AVAILABLE
    assert refund.reservation.state == card_pb2.RESERVATION_STATE_REFUNDED
    assert (await card.RefundCard(order_id="o1")) == refund
    entries = await history(card, r.card.card_id)
    assert [e.cause for e in entries] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM", "REFUND"]
    assert_ledger_explains(entries, card_pb2.CARD_STATE_AVAILABLE)
    # A redeem replay after the refund does not spend the card again.
    replay = await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=2500, redeem=True)
    assert replay.reservation.state == card_pb2.RESERVATION_STATE_REFUNDED


async def test_redeem_of_an_order_the_card_does_not_pay_in_full_is_refused_and_holds_nothing(card):
    await card.campaign(C)
    granted = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=2501, redeem=True)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(err.value)["reason"] == "REDEEM_NOT_COVERED"
    # A plain hold for more than the face value, then redeem: refused too, the hold stays.
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=3000)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=3000, redeem=True)
    assert error_details(err.value)["reason"] == "REDEEM_NOT_COVERED"
    assert [e.cause for e in await history(card, granted.card_id)] == ["GRANT_SIGNUP", "RESERVE"]


async def test_redeem_without_an_available_card_is_refused(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o1", amount_fen=900, redeem=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.ReserveCard(campaign_id=C, user_id="alice", order_id="o2", amount_fen=900, redeem=True)
    assert error_details(err.value)["reason"] == "NO_CARD_AVAILABLE"


async def test_100_concurrent_redeems_of_one_card_from_different_orders_let_exactly_one_win(card):
    await card.campaign(C)
    target = (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards[0]
    ok, reasons = await outcomes([
        card.ReserveCard(campaign_id=C, user_id="alice", order_id=f"o{n}", amount_fen=1000, card_id=target.card_id, redeem=True)
        for n in range(100)
    ])
    assert len(ok) == 1 and reasons == Counter({"CARD_NOT_AVAILABLE": 99})
    assert ok[0].reservation.state == CONFIRMED
    entries = await history(card, target.card_id)
    assert [e.cause for e in entries] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]
    assert_ledger_explains(entries, REDEEMED)
    assert (await card.GetBudget(campaign_id=C)).budget.redeemed_fen == 2500


async def test_100_concurrent_redeems_without_a_named_card_spend_each_card_once(card):
    await card.campaign(C, signup_grant=3, per_user_card_cap=10)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    ok, reasons = await outcomes([
        card.ReserveCard(campaign_id=C, user_id="alice", order_id=f"o{n}", amount_fen=1000, redeem=True)
        for n in range(100)
    ])
    assert len(ok) == 3 and reasons == Counter({"NO_CARD_AVAILABLE": 97})
    assert len({r.card.card_id for r in ok}) == 3


async def test_the_same_redeem_retried_50_times_at_once_has_one_effect(card):
    await card.campaign(C, signup_grant=2, per_user_card_cap=10)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    ok, reasons = await outcomes([
        card.ReserveCard(request_id="pay-o1", campaign_id=C, user_id="alice", order_id="o1", amount_fen=1200, redeem=True)
        for _ in range(50)
    ])
    assert len(ok) == 50 and not reasons
    assert len({r.card.card_id for r in ok}) == 1 and all(r.reservation.state == CONFIRMED for r in ok)
    wallet = (await card.GetWallet(campaign_id=C, user_id="alice")).wallet
    counts = {t.state: t.count for t in wallet.totals}
    assert counts[REDEEMED] == 1 and counts[card_pb2.CARD_STATE_AVAILABLE] == 1
    entries = await history(card, ok[0].card.card_id)
    assert [e.cause for e in entries] == ["GRANT_SIGNUP", "RESERVE", "CONFIRM"]
