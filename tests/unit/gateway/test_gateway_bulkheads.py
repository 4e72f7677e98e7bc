"""The gateway's per-upstream bulkheads (gateway.clients.Bulkhead): calls to one upstream hold at
most a share of the gateway's admission limit, so a frozen order service cannot take the slots
Join, GetWallet and EnterLottery need; beyond its share a call is refused at once, UNAVAILABLE /
UPSTREAM_SATURATED with a retry delay, and gives its gateway slot back."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import grpc
import pytest

from gateway.clients import Bulkhead, Bulkheaded, RetryBudget, Retrying, UPSTREAM_SATURATED, _RetryingStub
from services.common.admission import CRITICAL, DEFAULT, AdmissionController
from services.common.config import Settings
from services.common.errors import error_details


class Stuck:
    """An upstream that never answers (a process under SIGSTOP) until `thaw()`."""

    def __init__(self) -> None:
        self.thawed = asyncio.Event()
        self.calls = 0

    async def __call__(self, request, *, timeout=None, metadata=None):
        self.calls += 1
        await self.thawed.wait()
        return "late"


async def answers(request, *, timeout=None, metadata=None):
    return "ok"


async def stick(n: int, call) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(call("req")) for _ in range(n)]
    for _ in range(3):  # every task reaches its upstream (a lent call through one more task)
        await asyncio.sleep(0)
    return tasks


def saturated(err: grpc.aio.AioRpcError) -> bool:
    d = error_details(err)
    return (
        err.code() == grpc.StatusCode.UNAVAILABLE
        and d["reason"] == UPSTREAM_SATURATED
        and 750 <= d["retry_after_ms"] <= 1250
        and 750 <= d["pushback_ms"] <= 1250
    )


async def cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


STALL_S = 0.05  # the production default is 500 ms; short here to keep the tests fast


async def until(condition, within: float = 1.0) -> None:
    deadline = time.perf_counter() + within
    while not condition():
        assert time.perf_counter() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_a_stuck_upstream_keeps_its_share_and_then_everything_beyond_is_refused_at_once():
    order = Stuck()
    bulkhead = Bulkhead("order", lambda: 64.0, 0.5, STALL_S)
    call = Bulkheaded(order, bulkhead)
    # While the upstream has not yet stalled, places beyond its share are lent (the gateway's
    # admission bounds how many calls there are at all).
    tasks = await stick(64, call)
    assert bulkhead.in_flight == 64 and bulkhead.lent == 32 and order.calls == 64
    # Its oldest call has waited STALL_S: the lent calls end, the share keeps waiting.
    await until(lambda: sum(t.done() for t in tasks) == 32)
    ended = [t for t in tasks if t.done()]
    assert ended == tasks[32:], "the calls beyond the share are the ones ended"
    for t in ended:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            t.result()
        assert saturated(info.value)
    assert bulkhead.in_flight == 32 and bulkhead.lent == 0 and bulkhead.evicted == 32
    # From now on a new call is refused at once, without being sent.
    start = time.perf_counter()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call("req")
    assert time.perf_counter() - start < 0.01 and saturated(info.value) and order.calls == 64
    order.thawed.set()
    assert await asyncio.gather(*tasks[:32]) == ["late"] * 32
    assert bulkhead.in_flight == 0 and not bulkhead.stalled()
    assert await call("req") == "late", "a thawed upstream is called again"


async def test_a_busy_upstream_that_keeps_answering_may_use_the_whole_limit():
    """40 concurrent orders at a limit of 32..64 are a lunch peak, not a stall
    (tests/integration/common/test_common_floor.py): never refused by the bulkhead. A stall time
    three times the module's: on a loaded machine a 10 ms call, late on its event loop, took
    past 50 ms, which is a stall by any measure."""
    stall_s = 3 * STALL_S
    bulkhead = Bulkhead("order", lambda: 64.0, 0.5, stall_s)

    async def takes_a_while(request, *, timeout=None, metadata=None):
        await asyncio.sleep(0.01)
        return "ok"

    call = Bulkheaded(takes_a_while, bulkhead)

    async def buyer() -> None:
        until_t = time.perf_counter() + 4 * stall_s
        while time.perf_counter() < until_t:
            assert await call("req") == "ok"

    await asyncio.gather(*(buyer() for _ in range(64)))
    assert bulkhead.peak == 64 and bulkhead.refused == 0 and bulkhead.evicted == 0


async def test_a_busy_upstream_with_a_slow_call_or_two_is_a_peak_not_a_stall():
    """The p99 objective lets one call in a hundred take longer than the stall time: at a lunch
    peak some call in flight nearly always does. Its age alone ended every lent call and refused
    the next ones (1 % of calls just past the objective refused ~7 % of a 40-buyer peak)."""
    bulkhead = Bulkhead("order", lambda: 64.0, 0.5, STALL_S)
    slow_ones = Stuck()

    async def takes_a_while(request, *, timeout=None, metadata=None):
        await asyncio.sleep(0.005)
        return "ok"

    tail = await stick(2, Bulkheaded(slow_ones, bulkhead))  # the tail: two calls past the objective
    call = Bulkheaded(takes_a_while, bulkhead)

    async def buyer() -> None:
        until_t = time.perf_counter() + 4 * STALL_S
        while time.perf_counter() < until_t:
            assert await call("req") == "ok"

    await asyncio.gather(*(buyer() for _ in range(40)))
    assert bulkhead.peak == 42 and bulkhead.refused == 0 and bulkhead.evicted == 0
    slow_ones.thawed.set()
    assert await asyncio.gather(*tail) == ["late"] * 2


async def test_refusals_in_a_row_are_told_different_delays():
    bulkhead = Bulkhead("order", lambda: 2.0, 0.5, STALL_S)
    tasks = await stick(1, Bulkheaded(Stuck(), bulkhead))
    await until(bulkhead.stalled)
    delays = set()
    for _ in range(9):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await Bulkheaded(answers, bulkhead)("req")
        delays.add(error_details(info.value)["retry_after_ms"])
    assert len(delays) == 9 and min(delays) == 750 and max(delays) == 1250
    await cancel(tasks)


async def test_calls_to_other_upstreams_still_pass_while_one_is_stuck():
    order, capacity = Stuck(), (lambda: 32.0)
    order_stub = _RetryingStub(SimpleNamespace(PlaceOrder=order), ("PlaceOrder",), Bulkhead("order", capacity, 0.5, STALL_S))
    card_stub = _RetryingStub(SimpleNamespace(GetWallet=answers), ("GetWallet",), Bulkhead("card", capacity, 0.5, STALL_S))
    tasks = await stick(32, order_stub.PlaceOrder)
    await until(lambda: order_stub.bulkhead.in_flight == 16)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await order_stub.PlaceOrder("req")
    assert saturated(info.value)
    assert await asyncio.gather(*(card_stub.GetWallet("req") for _ in range(16))) == ["ok"] * 16
    order.thawed.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes[:16] == ["late"] * 16
    assert all(isinstance(e, grpc.aio.AioRpcError) and saturated(e) for e in outcomes[16:])


async def test_a_place_is_given_back_however_the_call_ends():
    bulkhead = Bulkhead("order", lambda: 4.0, 0.5, STALL_S)

    async def fails(request, *, timeout=None, metadata=None):
        raise grpc.aio.AioRpcError(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")

    assert await Bulkheaded(answers, bulkhead)("req") == "ok"
    with pytest.raises(grpc.aio.AioRpcError):
        await Bulkheaded(fails, bulkhead)("req")
    stuck = Stuck()
    tasks = await stick(4, Bulkheaded(stuck, bulkhead))  # 2 own, 2 lent
    assert bulkhead.lent == 2
    await cancel(tasks)  # the end users gave up (deadline, cancelled call)
    assert bulkhead.in_flight == 0 and bulkhead.lent == 0 and bulkhead.peak == 4


async def test_a_method_that_must_not_be_ended_early_gets_the_share_only():
    bulkhead = Bulkhead("order", lambda: 4.0, 0.5, STALL_S)
    tasks = await stick(2, Bulkheaded(Stuck(), bulkhead, may_borrow=False))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Bulkheaded(answers, bulkhead, may_borrow=False)("req")
    assert saturated(info.value)
    assert await Bulkheaded(answers, bulkhead)("req") == "ok", "an idempotent one may still borrow"
    await cancel(tasks)


async def test_a_retried_call_holds_one_place_through_its_backoff():
    bulkhead = Bulkhead("order", lambda: 2.0, 0.5, STALL_S)
    dropped = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "Socket closed")
    answers_left = [dropped]

    async def flaky(request, *, timeout=None, metadata=None):
        if answers_left:
            raise answers_left.pop()
        return "ok"

    retried = asyncio.create_task(Bulkheaded(Retrying(flaky, RetryBudget(), jitter=lambda: 1.0), bulkhead)("req", timeout=2.0))
    await asyncio.sleep(0.005)  # in its 20 ms backoff
    assert bulkhead.in_flight == 1 and not answers_left
    assert await retried == "ok" and bulkhead.in_flight == 0


async def test_the_share_follows_the_admission_limit_as_it_adapts():
    limit = [64.0]
    bulkhead = Bulkhead("order", lambda: limit[0], 0.5)
    assert bulkhead.bound() == 32
    limit[0] = 33.7  # shrunk toward the floor: stuck calls missed their deadlines
    assert bulkhead.bound() == 16
    limit[0] = 1.0
    assert bulkhead.bound() == 1, "never zero: one call may always try"


async def test_the_share_does_not_grow_with_a_limit_that_grows_while_calls_are_stuck():
    limit = [64.0]
    bulkhead = Bulkhead("order", lambda: limit[0], 0.5, STALL_S, most=64)
    tasks = await stick(32, Bulkheaded(Stuck(), bulkhead))
    await until(bulkhead.stalled)
    limit[0] = 90.0  # the admission controller reads the stuck half as use, and grows
    assert bulkhead.bound() == 32
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await Bulkheaded(answers, bulkhead)("req")
    assert saturated(info.value)
    await cancel(tasks)


async def test_unary_methods_outside_the_retried_list_are_bulkheaded_without_borrowing_streams_are_not():
    class Unary(grpc.aio.UnaryUnaryMultiCallable):
        def __call__(self, request, **kw):
            raise AssertionError("not called here")

    raw = SimpleNamespace(Mutate=Unary(), Watch=object())
    stub = _RetryingStub(raw, (), Bulkhead("order", lambda: 64.0, 0.5))
    assert isinstance(stub.Mutate, Bulkheaded) and stub.Mutate is stub.Mutate and not stub.Mutate._may_borrow
    assert stub.Watch is raw.Watch


async def test_a_frozen_upstream_no_longer_starves_the_gateways_other_calls():
    """The gateway's admission (its real controller, at its start limit) in front of calls that
    go to a frozen order service: once it has stalled, orders hold half the slots and the rest is
    refused at once; Joins (DEFAULT, to the card service) are served. Share 1.0 (no bulkhead)
    shows the starvation the bulkhead fixes."""
    for share, joins_served in ((0.5, True), (1.0, False)):
        admission = AdmissionController(64, min_limit=32, max_wait_ms=0)
        capacity = lambda: admission.limit  # noqa: E731
        order = Bulkheaded(Stuck(), Bulkhead("order", capacity, share, STALL_S))
        card = Bulkheaded(answers, Bulkhead("card", capacity, share, STALL_S))

        async def gateway_call(criticality: str, upstream) -> str:
            permit = admission.try_acquire(criticality)  # raises Overloaded when full
            try:
                return await upstream("req")
            finally:
                permit.release()

        crowd = [asyncio.create_task(gateway_call(CRITICAL, order)) for _ in range(100)]
        await asyncio.sleep(2 * STALL_S)
        assert admission.in_flight == (32 if share == 0.5 else 64)
        outcomes = await asyncio.gather(*(gateway_call(DEFAULT, card) for _ in range(10)), return_exceptions=True)
        assert (outcomes == ["ok"] * 10) is joins_served, outcomes
        await cancel(crowd)


def test_the_share_and_the_stall_are_configurable_and_checked():
    defaults = Settings.from_env("gateway", {})
    assert (defaults.upstream_share_percent, defaults.upstream_stall_ms) == (50, 500.0)
    set_ = Settings.from_env("gateway", {"MIANDAN_UPSTREAM_SHARE_PERCENT": "70", "MIANDAN_UPSTREAM_STALL_MS": "800"})
    assert (set_.upstream_share_percent, set_.upstream_stall_ms) == (70, 800.0)
    for var, bad in (("MIANDAN_UPSTREAM_SHARE_PERCENT", "0"), ("MIANDAN_UPSTREAM_SHARE_PERCENT", "101"),
                     ("MIANDAN_UPSTREAM_SHARE_PERCENT", "half"), ("MIANDAN_UPSTREAM_STALL_MS", "0")):
        with pytest.raises(ValueError, match=var):
            Settings.from_env("gateway", {var: bad})
