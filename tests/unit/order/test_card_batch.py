"""BatchingCardClient over a fake card stub: coalescing, caps, deadlines and error parity with
the unary GrpcCardClient (the saga branches on those errors)."""
from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.card.servicer import error_status
from services.common.config import Settings
from services.common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
    UpstreamBusy,
    to_rpc_status,
)
from services.order.card_batch import BatchingCardClient, batching_enabled, card_client, entry_request
from services.order.upstream import CONFIRMED, HELD, GrpcCardClient

SETTINGS = Settings.from_env("order", {})

# Per user: the error the card service answers for that user's reservation.
ERRORS: dict[str, DomainError] = {
    "nocard": FailedPrecondition("NO_CARD_AVAILABLE", "没有可用的卡 / no card available"),
    "busycard": FailedPrecondition("CARD_NOT_AVAILABLE", "卡不可用 / card not available"),
    "thief": PermissionDenied("CARD_NOT_OWNED", "不是你的卡 / not your card"),
    "ghost": NotFound("CARD_NOT_FOUND", "没有这张卡 / no such card"),
    "rich": FailedPrecondition("REDEEM_NOT_COVERED", "卡不足以支付 / the card does not cover the order"),
    "clash": AlreadyExists("ORDER_ID_CONFLICT", "订单号已被使用 / order id used by another user"),
    "bad": InvalidArgument("amount_fen", "must be > 0"),
    "gone": NotFound("CAMPAIGN_NOT_FOUND", "活动不存在 / no such campaign"),
    "tired": ResourceExhausted("SOMETHING_EXHAUSTED", "稍后 / later", 70),
}


def aio_error(err: DomainError) -> grpc.aio.AioRpcError:
    """What a grpc client raises when the server's interceptor answers this DomainError."""
    status = to_rpc_status(err)
    return grpc.aio.AioRpcError(status.code, grpc.aio.Metadata(), grpc.aio.Metadata(*status.trailing_metadata), status.details)


def answer(req: pb.ReserveCardRequest) -> pb.ReserveCardResponse:
    if req.user_id in ERRORS:
        raise ERRORS[req.user_id]
    state = card_pb2.RESERVATION_STATE_CONFIRMED if req.redeem else card_pb2.RESERVATION_STATE_HELD
    return pb.ReserveCardResponse(
        reservation=card_pb2.Reservation(
            order_id=req.order_id, card_id=f"card-of-{req.order_id}", user_id=req.user_id, state=state,
            amount_fen=req.amount_fen, covered_fen=min(req.amount_fen, 2500), campaign_id=req.campaign_id,
        ),
        card=card_pb2.Card(card_id=f"card-of-{req.order_id}", face_value_fen=2500),
    )


class FakeCardStub:
    """ReserveCard / ReserveCards as the card server answers them, gated so tests decide when
    RPCs return; honours the call timeout as grpc does."""

    def __init__(self) -> None:
        self.unary: list[tuple[pb.ReserveCardRequest, float]] = []
        self.batches: list[tuple[pb.ReserveCardsRequest, float]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.batch_error: grpc.aio.AioRpcError | None = None
        self.unimplemented = False

    async def _wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.gate.wait(), timeout)
        except asyncio.TimeoutError:
            raise grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, None, None, "Deadline Exceeded") from None

    async def ReserveCard(self, req, metadata=None, timeout=None):
        self.unary.append((req, timeout))
        await self._wait(timeout)
        try:
            return answer(req)
        except DomainError as err:
            raise aio_error(err) from None

    async def ReserveCards(self, req, metadata=None, timeout=None):
        if self.unimplemented:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNIMPLEMENTED, None, None, "Method not found!")
        self.batches.append((req, timeout))
        await self._wait(timeout)
        if self.batch_error is not None:
            raise self.batch_error
        results = []
        for entry in req.reservations:
            try:
                results.append(pb.ReserveCardResult(reservation=answer(entry)))
            except DomainError as err:
                results.append(pb.ReserveCardResult(error=error_status(err)))
        return pb.ReserveCardsResponse(results=results)


@pytest.fixture
async def stub():
    return FakeCardStub()


@pytest.fixture
async def unary(stub):
    client = GrpcCardClient(SETTINGS, "127.0.0.1:9")
    client._stub = stub  # the real unary client, translating the fake's errors
    yield client
    await client.close()


def batching(unary, stub, **kw):
    return BatchingCardClient(unary, metadata=(("x", "y"),), stub=stub, **kw)


def reserve(client, user, key=None, *, timeout=2.0, redeem=True, amount=1500):
    return client.reserve(
        campaign_id="spring", user_id=user, key=key or f"o-{user}", amount_fen=amount, card_id="", ttl_seconds=960,
        timeout=timeout, redeem=redeem,
    )


def sizes(stub):
    return [len(req.reservations) for req, _ in stub.batches]


def facts(err: DomainError):
    return type(err), err.code, err.reason, err.message, err.violations, err.retry_after_ms, err.metadata


async def turns(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_lone_call_goes_out_at_once_as_a_plain_reserve_card(unary, stub):
    client = batching(unary, stub)
    t0 = time.perf_counter()
    r = await reserve(client, "alice")
    assert time.perf_counter() - t0 < 0.05
    assert r.state == CONFIRMED and r.card_id == "card-of-o-alice" and r.face_value_fen == 2500
    assert len(stub.unary) == 1 and stub.batches == []
    assert client.calls["ReserveCard"] == 1 and client.calls["ReserveCards"] == 0


async def test_calls_made_together_go_out_as_one_batch_with_the_unary_requests(unary, stub):
    client = batching(unary, stub)
    got = await asyncio.gather(*(reserve(client, f"u{i}", redeem=i % 2 == 0) for i in range(10)))
    assert sizes(stub) == [10] and stub.unary == []
    assert [r.card_id for r in got] == [f"card-of-o-u{i}" for i in range(10)]
    assert [r.state for r in got] == [CONFIRMED if i % 2 == 0 else HELD for i in range(10)]
    assert client.calls["ReserveCards"] == 1 and client.calls["ReserveCards.entries"] == 10
    # Each entry is the very request the unary path sends (same idempotency key).
    await reserve(client, "u3", redeem=False)
    assert stub.unary[0][0] == stub.batches[0][0].reservations[3]


async def test_calls_queue_while_two_rpcs_are_in_flight_and_go_together_when_one_returns(unary, stub):
    client = batching(unary, stub, max_in_flight=2)
    stub.gate.clear()
    first = asyncio.ensure_future(reserve(client, "a"))
    await turns()
    second = asyncio.ensure_future(reserve(client, "b"))
    await turns()
    assert [req.user_id for req, _ in stub.unary] == ["a", "b"]  # both sent alone, at once
    rest = [asyncio.ensure_future(reserve(client, f"q{i}")) for i in range(7)]
    await turns()
    later = asyncio.ensure_future(reserve(client, "late"))
    await turns()
    assert stub.batches == []  # two in flight: the others wait
    stub.gate.set()
    results = await asyncio.gather(first, second, *rest, later)
    assert [r.card_id for r in results] == [f"card-of-o-{u}" for u in ["a", "b", *(f"q{i}" for i in range(7)), "late"]]
    assert sum(sizes(stub)) == 8 and len(stub.batches) <= 2 and max(sizes(stub)) >= 4
    assert client.calls["ReserveCard"] == 2 and client.calls["ReserveCards.entries"] == 8


async def test_by_default_one_rpc_is_in_flight_and_everything_else_waits_for_it(unary, stub):
    client = batching(unary, stub)
    stub.gate.clear()
    first = asyncio.ensure_future(reserve(client, "a"))
    await turns()
    rest = [asyncio.ensure_future(reserve(client, f"q{i}")) for i in range(5)]
    await turns()
    assert [req.user_id for req, _ in stub.unary] == ["a"] and stub.batches == []
    stub.gate.set()
    got = await asyncio.gather(first, *rest)
    assert [r.card_id for r in got] == [f"card-of-o-{u}" for u in ["a", *(f"q{i}" for i in range(5))]]
    assert sizes(stub) == [5]  # the five that waited went out as one batch


async def test_no_rpc_carries_more_than_the_cap(unary, stub):
    client = batching(unary, stub, max_entries=4, max_in_flight=2)
    stub.gate.clear()
    calls = [asyncio.ensure_future(reserve(client, f"u{i}")) for i in range(11)]
    await turns()
    assert sizes(stub) == [4, 4]  # two RPCs in flight, the rest waits
    stub.gate.set()
    got = await asyncio.gather(*calls)
    assert sizes(stub) == [4, 4, 3]
    assert {r.card_id for r in got} == {f"card-of-o-u{i}" for i in range(11)}


async def test_each_entry_error_is_the_domain_error_the_unary_call_raises(unary, stub):
    client = batching(unary, stub)
    users = ["ok1", *ERRORS, "ok2"]
    got = await asyncio.gather(*(reserve(client, u) for u in users), return_exceptions=True)
    assert sizes(stub) == [len(users)]
    assert got[0].card_id == "card-of-o-ok1" and got[-1].card_id == "card-of-o-ok2"
    for user, outcome in zip(users[1:-1], got[1:-1]):
        with pytest.raises(DomainError) as alone:
            await reserve(unary, user)
        assert isinstance(outcome, DomainError), user
        assert facts(outcome) == facts(alone.value), user
    assert got[users.index("nocard")].reason == "NO_CARD_AVAILABLE"
    assert isinstance(got[users.index("thief")], PermissionDenied) and got[users.index("thief")].reason == "CARD_NOT_OWNED"
    assert got[users.index("bad")].violations == [("amount_fen", "must be > 0")]
    assert got[users.index("tired")].retry_after_ms == 70


async def test_an_overloaded_card_service_fails_the_whole_batch_as_the_unary_call_would(unary, stub):
    client = batching(unary, stub)
    stub.batch_error = aio_error(Unavailable("OVERLOADED", "繁忙 / busy", 40))
    got = await asyncio.gather(*(reserve(client, f"u{i}") for i in range(5)), return_exceptions=True)
    for err in got:
        # A shedding card service is named apart from one that is down.
        assert isinstance(err, UpstreamBusy) and err.reason == "UPSTREAM_OVERLOADED"
        assert err.metadata == {"upstream": "card", "upstream_reason": "OVERLOADED"} and err.retry_after_ms == 40
    assert len({id(e) for e in got}) == 5  # raised separately, so each its own instance


async def test_a_card_service_that_is_down_fails_the_batch_with_upstream_unavailable(unary, stub):
    client = batching(unary, stub)
    stub.batch_error = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "failed to connect to all addresses")
    got = await asyncio.gather(*(reserve(client, f"u{i}") for i in range(3)), return_exceptions=True)
    assert all(isinstance(e, Unavailable) and e.reason == "UPSTREAM_UNAVAILABLE" for e in got)
    # The next calls still go out (nothing stuck in flight).
    stub.batch_error = None
    assert (await reserve(client, "again")).card_id == "card-of-o-again"


async def test_each_caller_gives_up_at_its_own_deadline_with_upstream_deadline(unary, stub):
    client = batching(unary, stub)
    stub.gate.clear()
    short = asyncio.ensure_future(reserve(client, "short", timeout=0.05))
    longer = [asyncio.ensure_future(reserve(client, f"l{i}", timeout=1.0)) for i in range(3)]
    t0 = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as info:
        await short
    assert info.value.reason == "UPSTREAM_DEADLINE" and time.perf_counter() - t0 < 0.5
    (_, batch_timeout), = stub.batches
    assert 0.9 < batch_timeout <= 1.0  # the batch lasts as long as its most patient entry
    stub.gate.set()
    assert [r.card_id for r in await asyncio.gather(*longer)] == [f"card-of-o-l{i}" for i in range(3)]


async def test_an_entry_whose_deadline_passed_while_queued_is_not_sent(unary, stub):
    client = batching(unary, stub, max_in_flight=1)
    stub.gate.clear()
    blocker = asyncio.ensure_future(reserve(client, "blocker", timeout=2.0))
    await turns()
    doomed = asyncio.ensure_future(reserve(client, "doomed", timeout=0.03))
    keeper = asyncio.ensure_future(reserve(client, "keeper", timeout=2.0))
    with pytest.raises(DeadlineExceeded):
        await doomed
    stub.gate.set()
    await asyncio.gather(blocker, keeper)
    sent = [req.user_id for req, _ in stub.unary] + [e.user_id for req, _ in stub.batches for e in req.reservations]
    assert sent == ["blocker", "keeper"]


async def test_a_cancelled_caller_is_dropped_from_the_queue(unary, stub):
    client = batching(unary, stub, max_in_flight=1)
    stub.gate.clear()
    blocker = asyncio.ensure_future(reserve(client, "blocker"))
    await turns()
    gone = asyncio.ensure_future(reserve(client, "gone"))
    await turns()
    gone.cancel()
    stub.gate.set()
    await blocker
    await turns()
    assert [req.user_id for req, _ in stub.unary] == ["blocker"] and stub.batches == []


async def test_a_card_service_without_reserve_cards_gets_plain_calls(unary, stub):
    client = batching(unary, stub, unimplemented_retry_s=60)
    stub.unimplemented = True
    got = await asyncio.gather(*(reserve(client, f"u{i}") for i in range(4)), return_exceptions=True)
    assert [r.card_id for r in got] == [f"card-of-o-u{i}" for i in range(4)]
    assert sorted(req.user_id for req, _ in stub.unary) == [f"u{i}" for i in range(4)]
    # Not asked again for a while: the next burst goes straight to ReserveCard.
    stub.unary.clear()
    attempts = client.calls["ReserveCards"]
    errors = await asyncio.gather(reserve(client, "nocard"), reserve(client, "x"), return_exceptions=True)
    assert isinstance(errors[0], FailedPrecondition) and errors[0].reason == "NO_CARD_AVAILABLE"
    assert len(stub.unary) == 2 and client.calls["ReserveCards"] == attempts


async def test_everything_but_reserve_is_the_unary_clients(unary, stub):
    client = batching(unary, stub)
    seen = []

    async def confirm(key, *, timeout):
        seen.append(("confirm", key, timeout))

    async def release(key, *, timeout):
        seen.append(("release", key, timeout))

    async def refund(key, *, timeout):
        seen.append(("refund", key, timeout))
        return True

    unary.confirm, unary.release, unary.refund = confirm, release, refund
    await client.confirm("k", timeout=1.0)
    await client.release("k", timeout=2.0)
    assert await client.refund("k", timeout=3.0) is True
    assert seen == [("confirm", "k", 1.0), ("release", "k", 2.0), ("refund", "k", 3.0)]
    assert client.calls is unary.calls


async def test_closing_fails_queued_callers_instead_of_leaving_them_waiting(unary, stub):
    client = batching(unary, stub, max_in_flight=1)
    stub.gate.clear()
    calls = [asyncio.ensure_future(reserve(client, f"u{i}")) for i in range(3)]
    await turns()
    await client.close()
    got = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1.0)
    assert all(isinstance(e, DomainError) for e in got)


async def test_the_environment_turns_batching_off():
    assert batching_enabled({}) and batching_enabled({"MIANDAN_CARD_BATCH": "1"})
    assert not batching_enabled({"MIANDAN_CARD_BATCH": "0"}) and not batching_enabled({"MIANDAN_CARD_BATCH": "off"})
    with pytest.raises(ValueError, match="MIANDAN_CARD_BATCH"):
        batching_enabled({"MIANDAN_CARD_BATCH": "sometimes"})
    plain = card_client(SETTINGS, {"MIANDAN_CARD_BATCH": "0"})
    batched = card_client(SETTINGS, {})
    try:
        assert type(plain) is GrpcCardClient and isinstance(batched, BatchingCardClient)
    finally:
        await plain.close()
        await batched.close()


async def test_releasing_a_key_whose_reservation_is_still_in_flight_waits_for_its_answer(unary, stub):
    # The caller gave up at its deadline, but its entry is still at the card service: the
    # compensation's release must reach the card after that entry, never before it.
    order: list[str] = []

    async def release(key, *, timeout):
        order.append(f"release {key}")
        return None

    unary.release = release
    answer_batch = stub.ReserveCards

    async def reserve_cards(req, metadata=None, timeout=None):
        try:
            return await answer_batch(req, metadata=metadata, timeout=timeout)
        finally:
            order.append("batch answered")

    stub.ReserveCards = reserve_cards
    client = batching(unary, stub)
    stub.gate.clear()
    short = asyncio.ensure_future(reserve(client, "short", timeout=0.05))
    longer = [asyncio.ensure_future(reserve(client, f"l{i}", timeout=1.0)) for i in range(3)]
    with pytest.raises(DeadlineExceeded):
        await short
    (batch, _), = stub.batches
    key = batch.reservations[0].order_id
    undo = asyncio.ensure_future(client.release(key, timeout=1.0))
    await turns()
    assert not undo.done() and order == []  # held back while the batch is in flight
    stub.gate.set()
    await asyncio.gather(*longer)
    await undo
    assert order == ["batch answered", f"release {key}"]
    # Nothing in flight: a release goes out at once.
    await client.release(key, timeout=1.0)
    assert order[-1] == f"release {key}"


def test_a_reservation_request_carries_the_key_and_no_request_id():
    # Idempotent per order_id on the card side: no (method, request_id) record to write there.
    args = dict(campaign_id="spring", user_id="u", key="ord_x.1", amount_fen=1500, card_id="", ttl_seconds=960, redeem=True)
    req = entry_request(args)
    assert req.request_id == "" and req.order_id == "ord_x.1" and req.redeem and req.amount_fen == 1500


async def test_a_release_waits_for_every_rpc_still_carrying_the_key_when_the_saga_repeated_it(unary, stub):
    # The saga repeats a reservation whose first caller's deadline ran out (a joined retry has
    # time): with two RPCs in flight the repeat may be answered while the first RPC carrying the
    # key is still out, and the release must still come after that one.
    order: list[str] = []

    async def release(key, *, timeout):
        order.append(f"release {key}")
        return None

    unary.release = release
    held = asyncio.Event()
    answer_batch = stub.ReserveCards

    async def reserve_cards(req, metadata=None, timeout=None):
        await held.wait()
        try:
            return await answer_batch(req, metadata=metadata, timeout=timeout)
        finally:
            order.append("batch answered")

    stub.ReserveCards = reserve_cards
    client = batching(unary, stub, max_in_flight=2)
    short = asyncio.ensure_future(reserve(client, "short", timeout=0.05))
    longer = [asyncio.ensure_future(reserve(client, f"l{i}", timeout=1.0)) for i in range(3)]
    with pytest.raises(DeadlineExceeded):
        await short
    repeated = await reserve(client, "short", timeout=1.0)  # alone, answered at once
    assert repeated.card_id == "card-of-o-short" and order == []
    undo = asyncio.ensure_future(client.release("o-short", timeout=1.0))
    await turns()
    assert not undo.done() and order == []  # the first RPC carrying the key is still out
    held.set()
    await asyncio.gather(*longer)
    await undo
    assert order == ["batch answered", "release o-short"]


async def test_a_batch_the_card_services_core_turned_away_fails_as_busy_not_as_a_timeout(unary, stub):
    # MIANDAN_CARD_MAX_PENDING_CALLS: the core refuses with a bare CANCELLED within milliseconds.
    client = batching(unary, stub)
    stub.batch_error = grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), "CANCELLED")
    got = await asyncio.gather(*(reserve(client, f"u{i}") for i in range(3)), return_exceptions=True)
    for err in got:
        assert isinstance(err, UpstreamBusy) and err.reason == "UPSTREAM_UNAVAILABLE" and err.retry_after_ms
    stub.batch_error = None
    assert (await reserve(client, "again")).card_id == "card-of-o-again"
