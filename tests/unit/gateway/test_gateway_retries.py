"""The gateway's retries of its upstreams (gateway.clients.Retrying): UNAVAILABLE without a
pushback only (a dropped connection, or a call the upstream's core turned away; a refusal with its delay is passed on at once), a short
backoff inside the caller's deadline, and a budget that stops retrying an upstream that keeps
failing."""
from __future__ import annotations

import time

import grpc
import pytest

from gateway.clients import RetryBudget, Retrying
from services.common.admission import Overloaded
from services.common.errors import NotFound, Unavailable

from .conftest import rpc_error


class Upstream:
    def __init__(self, *answers: BaseException | str) -> None:
        self.answers = list(answers)
        self.timeouts: list[float | None] = []

    async def __call__(self, request, *, timeout=None, metadata=None):
        self.timeouts.append(timeout)
        answer = self.answers.pop(0) if self.answers else "ok"
        if isinstance(answer, BaseException):
            raise answer
        return answer


def dropped() -> grpc.aio.AioRpcError:
    """What a connection that failed or dropped gives: UNAVAILABLE, no details, no pushback."""
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "Socket closed")


async def test_a_refusal_with_a_pushback_is_passed_on_at_once_not_asked_again():
    upstream = Upstream(*[rpc_error(Overloaded(1000))] * 3)
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Retrying(upstream, RetryBudget())("req", timeout=5.0)
    assert time.perf_counter() - start < 0.1
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and len(upstream.timeouts) == 1


async def test_a_dropped_connection_is_retried_after_milliseconds_and_then_passed_on():
    upstream = Upstream(*[dropped()] * 3)
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Retrying(upstream, RetryBudget())("req", timeout=5.0)
    assert time.perf_counter() - start < 0.3
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and len(upstream.timeouts) == 3


async def test_a_drop_followed_by_an_answer_is_the_answer_and_each_attempt_gets_what_is_left():
    upstream = Upstream(dropped())
    assert await Retrying(upstream, RetryBudget(), jitter=lambda: 1.0)("req", timeout=2.0) == "ok"
    first, second = upstream.timeouts
    assert first == 2.0 and 1.9 < second < 1.99


def turned_away(details: bytes | None = None) -> grpc.aio.AioRpcError:
    """What an upstream's core gives a call its busy loop never took in: CANCELLED, no details."""
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", details)) if details else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), trailing, "Cancelled")


async def test_a_call_the_upstreams_core_turned_away_is_retried_like_a_dropped_connection():
    upstream = Upstream(turned_away(), turned_away())
    assert await Retrying(upstream, RetryBudget(), jitter=lambda: 1.0)("req", timeout=2.0) == "ok"
    assert len(upstream.timeouts) == 3


async def test_a_cancelled_answer_from_a_handler_is_not_retried():
    upstream = Upstream(turned_away(details=b"\x08\x01"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Retrying(upstream, RetryBudget())("req", timeout=1.0)
    assert info.value.code() == grpc.StatusCode.CANCELLED and len(upstream.timeouts) == 1


async def test_other_answers_are_not_retried():
    upstream = Upstream(rpc_error(NotFound("ORDER_NOT_FOUND", "no such order")))
    with pytest.raises(grpc.aio.AioRpcError):
        await Retrying(upstream, RetryBudget())("req", timeout=1.0)
    assert len(upstream.timeouts) == 1


async def test_no_retry_starts_that_the_deadline_leaves_no_room_for():
    upstream = Upstream(dropped())
    with pytest.raises(grpc.aio.AioRpcError):
        await Retrying(upstream, RetryBudget(), jitter=lambda: 1.0)("req", timeout=0.01)
    assert len(upstream.timeouts) == 1


async def test_an_upstream_that_keeps_refusing_stops_being_retried_until_successes_refill_the_budget():
    budget = RetryBudget(max_tokens=10, ratio=0.1)
    upstream = Upstream(*[dropped() for _ in range(100)])
    call = Retrying(upstream, budget, jitter=lambda: 0.0)
    for _ in range(4):
        with pytest.raises(grpc.aio.AioRpcError):
            await call("req", timeout=1.0)
    # 5 tokens spent by the first refusals: from then on one attempt per call.
    attempts = len(upstream.timeouts)
    with pytest.raises(grpc.aio.AioRpcError):
        await call("req", timeout=1.0)
    assert len(upstream.timeouts) == attempts + 1
    upstream.answers = []
    for _ in range(60):  # 0.1 token each, from empty to above half
        await call("req", timeout=1.0)
    assert budget.allows_retry()


async def test_a_refusal_asking_for_a_short_wait_is_retried_after_that_wait():
    # The order service's "retry" after a placement it interrupted or undid (50-200 ms): the
    # next attempt places the order, so the user must not get the refusal.
    upstream = Upstream(rpc_error(Unavailable("CARD_REDEEMED_PARTLY", "the card covers part of the order, retry", 50)))
    start = time.perf_counter()
    assert await Retrying(upstream, RetryBudget(), jitter=lambda: 0.0)("req", timeout=2.0) == "ok"
    assert time.perf_counter() - start >= 0.05 and len(upstream.timeouts) == 2
