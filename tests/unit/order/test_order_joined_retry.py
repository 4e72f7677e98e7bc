"""A retry of a request still being placed joins that placement and lends it its deadline while
it waits (Budget.joined_by): a card call cut short by the impatient first caller's deadline is
made again with the same key instead of the retry sharing that caller's DEADLINE_EXCEEDED."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.common.errors import DeadlineExceeded, DomainError, Unavailable
from services.order import model
from services.order.handlers import MAX_OUTLIVED_REPEATS, Budget, PlaceOrderInput, _outliving
from services.order.model import Selection


def place(request_id="r1", user="u1"):
    return PlaceOrderInput(request_id=request_id, user_id=user, store_id="s1", lines=(Selection("latte", 1),))


async def fails(coro, code, reason=None):
    with pytest.raises(DomainError) as info:
        await coro
    assert info.value.code == code, info.value
    if reason is not None:
        assert info.value.reason == reason, info.value
    return info.value


async def until(condition, turns=200):
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("never happened")


def answered_when(world, gate: asyncio.Event, error: DomainError | None = None) -> None:
    """The card does the work at once but answers only when `gate` opens, or gives up at the
    call's timeout as grpc would (then `error` instead of the reservation, if given)."""
    do = world.card.reserve

    async def reserve(**kw):
        done = await do(**kw)
        try:
            await asyncio.wait_for(gate.wait(), kw["timeout"])
        except asyncio.TimeoutError:
            raise DeadlineExceeded("UPSTREAM_DEADLINE", "card slow") from None
        if error is not None:
            raise error
        return done

    world.card.reserve = reserve


# --- the budget --------------------------------------------------------------------------


async def test_a_joining_callers_later_deadline_extends_the_budget_only_while_it_waits():
    budget = Budget(0.05)
    first = budget.deadline
    with budget.joined_by(Budget(5)):
        assert budget() > 4 and budget.extended_beyond(first)
        with budget.joined_by(Budget(0.01)):  # an earlier one never shortens it
            assert budget() > 4
    assert budget.deadline == first and budget() < 0.05 and not budget.extended_beyond(first)


async def test_a_joining_caller_without_a_deadline_gives_each_call_the_default():
    budget = Budget(0.05)
    first = budget.deadline
    with budget.joined_by(Budget(None, default=7.0)):
        assert budget.deadline is None and budget() == 7.0 and budget.extended_beyond(first)
    # A budget without a deadline is extended by nobody: its calls time out on their own.
    unbounded = Budget(None)
    with unbounded.joined_by(Budget(60)):
        assert unbounded() == 5.0 and not unbounded.extended_beyond(None)


async def test_a_call_is_made_again_only_when_a_waiting_caller_outlives_its_deadline():
    budget = Budget(0.05)
    timeouts: list[float] = []
    retry = Budget(5)

    async def cut_short(timeout):
        timeouts.append(timeout)
        if len(timeouts) == 1:
            stack.enter_context(budget.joined_by(retry))  # the retry joins while this call is out
            raise DeadlineExceeded("UPSTREAM_DEADLINE", "slow")
        return "reserved"

    with contextlib.ExitStack() as stack:
        assert await _outliving(budget, cut_short) == "reserved"
    assert len(timeouts) == 2 and timeouts[0] < 0.05 < 4 < timeouts[1]


async def test_a_deadline_nobody_outlives_and_other_errors_are_raised_at_once():
    budget = Budget(0.05)
    made = 0

    async def slow(timeout):
        nonlocal made
        made += 1
        raise DeadlineExceeded("UPSTREAM_DEADLINE", "slow")

    with pytest.raises(DeadlineExceeded):
        await _outliving(budget, slow)
    assert made == 1

    made = 0

    async def down(timeout):
        nonlocal made
        made += 1
        raise Unavailable("UPSTREAM_UNAVAILABLE", "down", 100)

    with budget.joined_by(Budget(5)):
        with pytest.raises(Unavailable):
            await _outliving(budget, down)
    assert made == 1


async def test_repeats_are_bounded_even_when_ever_later_callers_keep_joining():
    budget = Budget(0.05)
    made = 0

    async def always_cut_short(timeout):
        nonlocal made
        made += 1
        stack.enter_context(budget.joined_by(Budget(made)))
        raise DeadlineExceeded("UPSTREAM_DEADLINE", "slow")

    with contextlib.ExitStack() as stack:
        with pytest.raises(DeadlineExceeded):
            await _outliving(budget, always_cut_short)
    assert made == MAX_OUTLIVED_REPEATS + 1


# --- the saga ------------------------------------------------------------------------------


async def test_a_retry_joining_while_the_card_call_is_out_gets_the_order_with_one_reservation(world):
    world.card.grant("c1", "u1")
    gate = asyncio.Event()
    answered_when(world, gate)
    # The first caller gives up at its deadline (gRPC cancels its handler).
    first = asyncio.ensure_future(asyncio.wait_for(world.service.place_order(place(), Budget(0.3)), 0.3))
    await until(lambda: world.card.calls["ReserveCard"] == 1)
    retry = asyncio.ensure_future(world.service.place_order(place(), Budget(5)))
    with pytest.raises(asyncio.TimeoutError):
        await first
    await asyncio.sleep(0.05)  # the first card call has run out of the first caller's time
    gate.set()
    order = await retry
    assert order.status == model.PAID and order.card_id == "c1" and order.payable_fen == 0
    # The card call was made again with the same key: one reservation, one redeemed card.
    assert world.card.calls["ReserveCard"] == 2 and list(world.card.reservations) == [order.reservation_key]
    assert world.card.cards["c1"].state == "REDEEMED" and world.card.calls["ReleaseReservation"] == 0
    await world.service.drain()


async def test_a_retry_that_stopped_waiting_lends_no_time_and_the_placement_ends_as_before(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True
    gate = asyncio.Event()
    answered_when(world, gate)
    first = asyncio.ensure_future(world.service.place_order(place(), Budget(0.3)))
    await until(lambda: world.card.calls["ReserveCard"] == 1)
    retry = asyncio.ensure_future(world.service.place_order(place(), Budget(5)))
    await asyncio.sleep(0.01)
    retry.cancel()  # its caller went away before the first caller's deadline ran out
    await fails(first, "DEADLINE_EXCEEDED", "UPSTREAM_DEADLINE")
    await world.service.drain()
    assert world.card.calls["ReserveCard"] == 1 and world.card.cards["c1"].state == "AVAILABLE"


async def test_an_unavailable_card_service_still_answers_every_waiting_caller_at_once(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True
    gate = asyncio.Event()
    answered_when(world, gate, Unavailable("UPSTREAM_UNAVAILABLE", "card down", 100))
    first = asyncio.ensure_future(world.service.place_order(place(), Budget(5)))
    await until(lambda: world.card.calls["ReserveCard"] == 1)
    retry = asyncio.ensure_future(world.service.place_order(place(), Budget(10)))
    await asyncio.sleep(0)
    gate.set()
    await fails(first, "UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    await fails(retry, "UNAVAILABLE", "UPSTREAM_UNAVAILABLE")
    await world.service.drain()
    # Settled early and compensated, never repeated.
    assert world.card.calls["ReserveCard"] == 1 and world.card.cards["c1"].state == "AVAILABLE"


async def test_a_retry_arriving_while_a_timed_out_placement_is_undone_is_told_to_retry(world):
    world.card.grant("c1", "u1")
    world.card.ignores_redeem = True
    world.card.slow = True
    undo = asyncio.Event()
    release = world.card.release

    async def held_back_release(key, *, timeout):
        await undo.wait()
        return await release(key, timeout=timeout)

    world.card.release = held_back_release
    await fails(world.service.place_order(place(), Budget(0.5)), "DEADLINE_EXCEEDED", "UPSTREAM_DEADLINE")
    # That deadline was the first caller's: this retry has time, and is told to come back.
    await fails(world.service.place_order(place(), Budget(5)), "UNAVAILABLE", "PLACEMENT_INTERRUPTED")
    undo.set()
    await world.service.drain()
    world.card.slow = False
    order = await world.service.place_order(place(), Budget(5))
    assert order.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"
