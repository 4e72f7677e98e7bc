"""CardHandlers.reserve_batch and the ReserveCards servicer over a fake store: entries run
together and fail alone; an entry's error becomes the status ReserveCard would have sent."""
import asyncio

import grpc
import pytest

from miandan.card.v1 import card_service_pb2 as pb
from services.card import model as m
from services.card.handlers import CardHandlers, ReserveEntry
from services.card.servicer import CardServicer, error_status
from services.card.store import Hold
from services.common.clock import FakeClock, now_ms
from services.common.errors import (
    STATUS_DETAILS_KEY,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    error_details,
    to_rpc_status,
)

C = "spring"


def campaign(clock):
    start = now_ms(clock) - 1000
    return m.new_campaign(C, "春节", start, start + 30 * m.DAY_MS, m.Rules(budget_fen=10**9), start, b"k" * 32)


class CountingStore:
    """Answers every reservation after yielding once, recording which ran concurrently."""

    def __init__(self, c, clock):
        self.c, self.clock = c, clock
        self.running = 0
        self.most_at_once = 0

    async def get_campaign(self, campaign_id):
        return self.c if campaign_id == C else None

    async def reserve_many(self, calls):
        # As the real store: every call in flight at once, each outcome its own.
        return await asyncio.gather(*(self.reserve(*call) for call in calls), return_exceptions=True)

    async def reserve(self, c, user_id, order_id, amount_fen, card_id, ttl, request_id, now, redeem=False):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        await asyncio.sleep(0)
        self.running -= 1
        if user_id == "broke":
            raise FailedPrecondition(m.NO_CARD_AVAILABLE, "没有可用的卡 / no card available")
        if user_id == "bug":
            raise RuntimeError("a bug in one entry")
        card = m.Card(
            card_id=f"card-{order_id}", campaign_id=C, user_id=user_id, state=m.CardState.RESERVED,
            source=m.CardSource.SIGNUP, face_value_fen=2500, grant_ms=now, expire_ms=now + m.DAY_MS,
            order_id=order_id, reserved_until_ms=now + ttl * 1000,
        )
        r = m.Reservation(
            order_id=order_id, card_id=card.card_id, user_id=user_id, state=m.ReservationState.HELD,
            amount_fen=amount_fen, covered_fen=min(amount_fen, 2500), expire_ms=now + ttl * 1000, campaign_id=C,
        )
        return Hold(r, card)


def entry(user, order, amount=1500, campaign_id=C):
    return ReserveEntry(f"{order}:reserve", campaign_id, user, order, amount, "", 0)


@pytest.fixture
def store():
    clock = FakeClock()
    return CountingStore(campaign(clock), clock)


async def test_entries_run_together_and_each_fails_alone(store):
    h = CardHandlers(store, store.clock)
    out = await h.reserve_batch("b1", [entry("a", "o1"), entry("broke", "o2"), entry("b", "o3", amount=0),
                                       entry("c", "o4", campaign_id="nope"), entry("d", "o5")])
    assert store.most_at_once == 3  # the three that reach the store are in it at once
    assert isinstance(out[0], Hold) and out[0].reservation.order_id == "o1"
    assert isinstance(out[1], FailedPrecondition) and out[1].reason == m.NO_CARD_AVAILABLE
    assert isinstance(out[2], InvalidArgument) and out[2].violations == [("amount_fen", "must be > 0")]
    assert isinstance(out[3], DomainError) and out[3].reason == "CAMPAIGN_NOT_FOUND"
    assert isinstance(out[4], Hold) and out[4].reservation.order_id == "o5"


@pytest.mark.parametrize("n", [0, m.MAX_BATCH_RESERVATIONS + 1])
async def test_an_empty_or_oversized_batch_is_refused_as_a_whole(store, n):
    h = CardHandlers(store, store.clock)
    with pytest.raises(InvalidArgument) as err:
        await h.reserve_batch("b", [entry("a", f"o{i}") for i in range(n)])
    assert err.value.violations[0][0] == "reservations"


def as_call(status):
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    trailing = grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString()))
    return grpc.aio.AioRpcError(code, None, trailing, status.message)


@pytest.mark.parametrize(
    "err",
    [
        FailedPrecondition(m.NO_CARD_AVAILABLE, "没有可用的卡 / no card available"),
        InvalidArgument("user_id", "1..128 characters"),
        ResourceExhausted("OVERLOADED", "繁忙 / busy", 120),
    ],
)
def test_an_entry_status_carries_what_the_unary_status_carries(err):
    status = to_rpc_status(err)
    unary = grpc.aio.AioRpcError(status.code, None, grpc.aio.Metadata(*status.trailing_metadata), status.details)
    batched, alone = error_details(as_call(error_status(err))), error_details(unary)
    alone["pushback_ms"] = None  # the pushback header belongs to the RPC, RetryInfo to the entry
    assert batched == alone


async def test_the_servicer_answers_every_entry_in_order_and_hides_a_bug_as_internal(store, caplog):
    servicer = CardServicer(CardHandlers(store, store.clock))
    request = pb.ReserveCardsRequest(
        request_id="b1",
        reservations=[
            pb.ReserveCardRequest(request_id="o1:reserve", campaign_id=C, user_id="a", order_id="o1", amount_fen=100),
            pb.ReserveCardRequest(request_id="o2:reserve", campaign_id=C, user_id="bug", order_id="o2", amount_fen=100),
            pb.ReserveCardRequest(request_id="o3:reserve", campaign_id=C, user_id="broke", order_id="o3", amount_fen=100),
        ],
    )
    resp = await servicer.ReserveCards(request, None)
    assert [r.WhichOneof("outcome") for r in resp.results] == ["reservation", "error", "error"]
    assert resp.results[0].reservation.reservation.order_id == "o1"
    assert resp.results[0].reservation.card.card_id == "card-o1"
    bug, broke = error_details(as_call(resp.results[1].error)), error_details(as_call(resp.results[2].error))
    assert (bug["code"], bug["reason"]) == ("INTERNAL", "INTERNAL") and "bug" not in bug["message"]
    assert (broke["code"], broke["reason"]) == ("FAILED_PRECONDITION", m.NO_CARD_AVAILABLE)
    assert "unexpected exception in a ReserveCards entry" in caplog.text
