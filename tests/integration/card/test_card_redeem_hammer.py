"""Concurrent ReserveCards(redeem) batches over a real card server, against the invariants of the
one-step redeem (AVAILABLE -> REDEEMED in one update): a card is redeemed by one order only, a
user never redeems more cards than it has, retries get the same card, a reused request_id is
refused, and every redeemed card's ledger reads GRANT, RESERVE, CONFIRM with the order's id."""
import asyncio
import random
from collections import Counter, defaultdict

import grpc

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.common.errors import STATUS_DETAILS_KEY, error_details

C = "spring"
USERS = [f"u{n}" for n in range(16)]
CARDS = 3
REDEEMED, CONFIRMED = card_pb2.CARD_STATE_REDEEMED, card_pb2.RESERVATION_STATE_CONFIRMED


def entry(user, order, *, amount=1500, card_id="", redeem=False, request_id=None):
    return pb.ReserveCardRequest(
        request_id=request_id if request_id is not None else f"{order}:reserve", campaign_id=C, user_id=user,
        order_id=order, amount_fen=amount, card_id=card_id, redeem=redeem,
    )


def entry_error(result):
    """error_details() of an entry's google.rpc.Status, as of the call that failed with it."""
    status = result.error
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    err = grpc.aio.AioRpcError(code, None, grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString())), status.message)
    return error_details(err)


async def test_concurrent_redeem_batches_keep_every_card_and_ledger_invariant(card):
    await card.campaign(C, signup_grant=CARDS, card_face_value_fen=2500)
    owned = {}
    for u in USERS:
        owned[u] = {c.card_id for c in (await card.ClaimSignupCard(campaign_id=C, user_id=u)).cards}
    requests = []
    for u in USERS:
        for n in range(2 * CARDS):  # twice as many orders as cards: half must find none
            order = f"{u}-o{n}"
            requests.append(entry(u, order, amount=1500, redeem=True))
            if n % 2 == 0:
                requests.append(entry(u, order, amount=1500, redeem=True))  # a retry of the same call
        # The same request_id for another amount of the same order: refused, whichever lands first.
        requests.append(entry(u, f"{u}-x", amount=1200, redeem=True, request_id=f"{u}-x:rid"))
        requests.append(entry(u, f"{u}-x", amount=1300, redeem=True, request_id=f"{u}-x:rid"))
    random.Random(5).shuffle(requests)
    batches = [requests[i:i + 10] for i in range(0, len(requests), 10)]
    responses = await asyncio.gather(
        *(card.ReserveCards(request_id=f"hammer-{i}", reservations=b) for i, b in enumerate(batches))
    )
    results = [r for resp in responses for r in resp.results]
    assert len(results) == len(requests)

    card_of_order: dict[str, set[str]] = defaultdict(set)
    orders_of_card: dict[str, set[str]] = defaultdict(set)
    reasons: Counter = Counter()
    reused: Counter = Counter()
    served: Counter = Counter()
    for req, res in zip(requests, results):
        if res.WhichOneof("outcome") == "error":
            reason = entry_error(res)["reason"]
            reasons[reason] += 1
            if reason == "REQUEST_ID_REUSED":
                reused[req.order_id] += 1
            continue
        hold = res.reservation
        assert hold.reservation.state == CONFIRMED and hold.card.state == REDEEMED
        assert hold.card.order_id == req.order_id and hold.card.card_id in owned[req.user_id]
        assert hold.reservation.covered_fen == req.amount_fen
        card_of_order[req.order_id].add(hold.card.card_id)
        served[req.order_id] += 1
        orders_of_card[hold.card.card_id].add(req.order_id)
    assert set(reasons) <= {"NO_CARD_AVAILABLE", "REQUEST_ID_REUSED"}, reasons
    # Of a pair sharing a request_id, the second is refused for it when the first got a card (a
    # first that failed left no record of its request_id); never both, never both served.
    for u in USERS:
        assert reused[f"{u}-x"] <= served[f"{u}-x"] <= 1
    assert sum(reused.values()) > 0
    assert all(len(cards) == 1 for cards in card_of_order.values()), "a retry got another card"
    assert all(len(orders) == 1 for orders in orders_of_card.values()), "a card redeemed by two orders"
    # Every card of every user was redeemed (more orders than cards), each by one order.
    assert set(orders_of_card) == set().union(*owned.values())

    for u in USERS:
        cards = (await card.ListCards(campaign_id=C, user_id=u)).cards
        assert {c.state for c in cards} == {REDEEMED} and len(cards) == CARDS
        for c in cards:
            (order,) = orders_of_card[c.card_id]
            assert c.order_id == order
            history = (await card.GetCardHistory(card_id=c.card_id)).entries
            assert [(e.from_state, e.to_state, e.order_id, e.cause) for e in history] == [
                (0, 1, "", "GRANT_SIGNUP"), (1, 2, order, "RESERVE"), (2, 3, order, "CONFIRM"),
            ]
            assert history[2].sequence == history[1].sequence + 1


async def test_two_orders_redeeming_the_same_chosen_card_at_once_get_it_once(card):
    await card.campaign(C, signup_grant=2)
    cards = [c.card_id for c in (await card.ClaimSignupCard(campaign_id=C, user_id="alice")).cards]
    requests = [entry("alice", f"o{n}", card_id=cards[n % 2], redeem=True) for n in range(40)]
    responses = await asyncio.gather(
        *(card.ReserveCards(request_id=f"b{i}", reservations=requests[i:i + 10]) for i in range(0, 40, 10)),
        *(card.ReserveCard(pb.ReserveCardRequest(request_id=f"u{n}", campaign_id=C, user_id="alice", order_id=f"u{n}",
                                                 amount_fen=100, card_id=cards[n % 2], redeem=True))
          for n in range(20)),
        return_exceptions=True,
    )
    winners: dict[str, list[str]] = defaultdict(list)
    failures = Counter()
    for resp in responses[:4]:
        for res in resp.results:
            if res.WhichOneof("outcome") == "reservation":
                winners[res.reservation.card.card_id].append(res.reservation.reservation.order_id)
            else:
                failures[entry_error(res)["reason"]] += 1
    for resp in responses[4:]:
        if isinstance(resp, BaseException):
            failures[error_details(resp)["reason"]] += 1
        else:
            winners[resp.card.card_id].append(resp.reservation.order_id)
    assert {k: len(v) for k, v in winners.items()} == {cards[0]: 1, cards[1]: 1}
    assert failures == Counter({"CARD_NOT_AVAILABLE": 58})
