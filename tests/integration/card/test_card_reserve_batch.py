"""ReserveCards over a real card server: each entry is one ReserveCard, independent of the others,
and the invariants (one live reservation per card, idempotency per order) hold under concurrent
batches."""
import asyncio
from collections import Counter, defaultdict

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.common.errors import STATUS_DETAILS_KEY, error_details

C = "spring"
HELD, CONFIRMED = card_pb2.RESERVATION_STATE_HELD, card_pb2.RESERVATION_STATE_CONFIRMED
RESERVED, REDEEMED, AVAILABLE = card_pb2.CARD_STATE_RESERVED, card_pb2.CARD_STATE_REDEEMED, card_pb2.CARD_STATE_AVAILABLE


def entry(user, order, *, amount=1500, card_id="", redeem=False, campaign=C, request_id=None):
    return pb.ReserveCardRequest(
        request_id=request_id if request_id is not None else f"{order}:reserve", campaign_id=campaign, user_id=user,
        order_id=order, amount_fen=amount, card_id=card_id, redeem=redeem,
    )


def entry_error(result):
    """error_details() of an entry's google.rpc.Status, as of the call that failed with it."""
    status = result.error
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    err = grpc.aio.AioRpcError(code, None, grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString())), status.message)
    return error_details(err)


async def unary_error(card, request):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await card.ReserveCard(request)
    return error_details(info.value)


async def signup(card, users):
    cards = {}
    for u in users:
        cards[u] = [c.card_id for c in (await card.ClaimSignupCard(campaign_id=C, user_id=u)).cards]
    return cards


async def test_a_batch_with_good_and_bad_entries_answers_each_as_reserve_card_would(card, card_server):
    await card.campaign(C, card_face_value_fen=2500)
    cards = await signup(card, ["alice", "bob", "carol"])
    requests = [
        entry("alice", "a1", redeem=True),  # ok: reserved and redeemed
        entry("alice", "a2"),  # alice's only card is taken by a1
        entry("bob", "b1", card_id=cards["alice"][0]),  # not bob's
        entry("bob", "b2", amount=0),  # bad input: a BadRequest, never INTERNAL
        entry("bob", "b3", amount=3000, redeem=True),  # above the face value
        entry("bob", "b4", campaign="nope"),
        entry("carol", "a1", request_id="carol-a1"),  # alice's order id
        entry("bob", "b5", card_id="no-such-card"),
        entry("carol", "c1"),  # ok: a plain hold
        entry("bob", "b6", request_id="spaces are not an id"),
    ]
    resp = await card.ReserveCards(request_id="batch-1", reservations=requests)
    assert len(resp.results) == len(requests)
    kinds = [r.WhichOneof("outcome") for r in resp.results]
    assert kinds == ["reservation"] + ["error"] * 7 + ["reservation", "error"]
    a1, c1 = resp.results[0].reservation, resp.results[8].reservation
    assert a1.reservation.state == CONFIRMED and a1.card.state == REDEEMED and a1.card.card_id == cards["alice"][0]
    assert c1.reservation.state == HELD and c1.card.state == RESERVED and c1.card.card_id == cards["carol"][0]
    errors = {requests[i].order_id: entry_error(resp.results[i]) for i in range(len(requests)) if kinds[i] == "error"}
    assert {k: (e["code"], e["reason"]) for k, e in errors.items()} == {
        "a2": ("FAILED_PRECONDITION", "NO_CARD_AVAILABLE"),
        "b1": ("PERMISSION_DENIED", "CARD_NOT_OWNED"),
        "b2": ("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
        "b3": ("FAILED_PRECONDITION", "REDEEM_NOT_COVERED"),
        "b4": ("NOT_FOUND", "CAMPAIGN_NOT_FOUND"),
        "a1": ("ALREADY_EXISTS", "ORDER_ID_CONFLICT"),
        "b5": ("NOT_FOUND", "CARD_NOT_FOUND"),
        "b6": ("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    }
    assert errors["b2"]["violations"] == [("amount_fen", "must be > 0")]
    assert errors["b6"]["violations"][0][0] == "request_id"
    assert all(e["domain"] == "miandan" and e["message"] for e in errors.values())
    # The same requests alone get the very same status (code, reason, message, violations).
    for i, request in enumerate(requests):
        if kinds[i] == "error":
            assert await unary_error(card, request) == errors[request.order_id], request.order_id
    # Failed entries left nothing behind: bob still has his card, b3 held nothing.
    bob = (await card.ListCards(campaign_id=C, user_id="bob")).cards
    assert [c.state for c in bob] == [AVAILABLE]


async def test_the_batch_itself_is_refused_only_when_empty_or_too_large_or_uncredentialed(card, card_server):
    await card.campaign(C)
    for n in (0, 257):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await card.ReserveCards(request_id="big", reservations=[entry("u", f"o{i}") for i in range(n)])
        d = error_details(info.value)
        assert (d["code"], d["reason"]) == ("INVALID_ARGUMENT", "INVALID_ARGUMENT") and d["violations"][0][0] == "reservations"
    _, _, settings = card_server
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await card.stub.ReserveCards(pb.ReserveCardsRequest(reservations=[entry("u", "o1")]), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # 256 entries is fine (errors per entry: nobody has a card).
    resp = await card.ReserveCards(request_id="full", reservations=[entry("u", f"o{i}") for i in range(256)])
    assert {entry_error(r)["reason"] for r in resp.results} == {"NO_CARD_AVAILABLE"}


async def test_replaying_an_entry_returns_the_same_reservation_in_a_batch_or_alone(card):
    await card.campaign(C)
    await signup(card, ["alice", "bob", "carol"])
    first = await card.ReserveCards(request_id="b1", reservations=[entry("alice", "o1", redeem=True), entry("bob", "o2")])
    again = await card.ReserveCards(request_id="b2", reservations=[entry("bob", "o2"), entry("alice", "o1", redeem=True)])
    assert again.results[1].reservation.reservation == first.results[0].reservation.reservation
    assert again.results[0].reservation.reservation == first.results[1].reservation.reservation
    alone = await card.ReserveCard(entry("alice", "o1", redeem=True))
    assert alone.reservation == first.results[0].reservation.reservation
    # The same key twice in one batch: one reservation (the second entry replays the first).
    twice = await card.ReserveCards(request_id="b3", reservations=[entry("carol", "o3"), entry("carol", "o3")])
    assert [r.WhichOneof("outcome") for r in twice.results] == ["reservation", "reservation"]
    assert twice.results[0].reservation.reservation == twice.results[1].reservation.reservation
    history = (await card.GetCardHistory(card_id=twice.results[0].reservation.card.card_id)).entries
    assert [e.cause for e in history].count("RESERVE") == 1


async def test_300_reservations_in_concurrent_batches_keep_one_reservation_per_card(card, card_server):
    server, _, _ = card_server
    await card.campaign(C, signup_grant=2, per_user_card_cap=5)
    users = [f"u{n}" for n in range(100)]
    cards = await signup(card, users)
    owner = {c: u for u, cs in cards.items() for c in cs}
    # 250 orders, 50 of them sent twice (in different batches); every third order redeems;
    # u7's orders all ask for the same card.
    orders = []
    for i in range(300):
        n = i % 250
        user = users[n % 100]
        wanted = cards["u7"][0] if user == "u7" else ""
        orders.append(entry(user, f"o{n}", redeem=n % 3 == 0, card_id=wanted))
    batches = [orders[i::10] for i in range(10)]  # 10 concurrent batches of 30, a key's twin elsewhere
    commits = server.card_store.db.batches
    responses = await asyncio.gather(
        *(card.ReserveCards(request_id=f"hammer-{i}", reservations=b) for i, b in enumerate(batches))
    )
    assert server.card_store.db.batches - commits < 60  # shared transactions, not one per entry
    answers = defaultdict(list)
    reasons = Counter()
    for batch, resp in zip(batches, responses):
        assert len(resp.results) == len(batch)
        for request, result in zip(batch, resp.results):
            if result.WhichOneof("outcome") == "reservation":
                answers[request.order_id].append(result.reservation)
            else:
                reasons[entry_error(result)["reason"]] += 1
    assert set(reasons) <= {"NO_CARD_AVAILABLE", "CARD_NOT_AVAILABLE"}, reasons
    held_by = defaultdict(set)
    for order_id, got in answers.items():
        # Replays (the twin in another batch) return the same reservation.
        assert len({r.reservation.SerializeToString() for r in got}) == 1, order_id
        r = got[0].reservation
        held_by[r.card_id].add(order_id)
        assert owner[r.card_id] == r.user_id
        n = int(order_id[1:])
        assert r.state == (CONFIRMED if n % 3 == 0 else HELD)
    assert all(len(o) == 1 for o in held_by.values())  # no card reserved for two orders
    assert len([o for o in held_by.values()]) == len(answers)
    # u7's three orders wanted one card: exactly one got it.
    assert len([o for o in answers if int(o[1:]) % 100 == 7]) == 1
    # The stored state agrees: every card is held/redeemed for at most one order, and exactly
    # the cards answered are out of the wallet.
    stored = (await card.ListCampaignCards(campaign_id=C, page_size=1000)).cards
    taken = {c.card_id: c.order_id for c in stored if c.state in (RESERVED, REDEEMED)}
    assert taken == {card_id: next(iter(o)) for card_id, o in held_by.items()}
    for user in users[:5]:
        wallet = (await card.GetWallet(campaign_id=C, user_id=user)).wallet
        assert wallet.cards_granted == 2
