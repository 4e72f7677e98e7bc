"""Reads the gateway shares between callers (the campaign, today's draw, a drawn day's check) are
made once for everyone who asks at the same moment. Who asked first must not decide for the
others: a caller whose deadline is nearly spent (a phone on a bad network, a call that queued)
used to run the shared read under its own deadline, and everyone who joined it failed or lost
their lottery standing at that caller's deadline, with plenty of time of their own left."""
from __future__ import annotations

import asyncio

import grpc

from miandan.lottery.v1 import lottery_pb2

DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED


def _deadline_error() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(DEADLINE, grpc.aio.Metadata(), grpc.aio.Metadata(), "Deadline Exceeded")


def honouring_timeouts(method, takes: float):
    """method as a real channel runs it against an upstream that answers after `takes` seconds:
    a call whose timeout is shorter fails DEADLINE_EXCEEDED when its timeout runs out."""

    async def call(request, *, timeout=None, metadata=None):
        if timeout is not None and timeout < takes:
            await asyncio.sleep(timeout)
            raise _deadline_error()
        await asyncio.sleep(takes)
        return await method(request, timeout=timeout, metadata=metadata)

    return call


async def _later(seconds: float, coro):
    await asyncio.sleep(seconds)
    return await coro


async def test_a_crowd_waiting_on_a_draw_check_is_not_failed_by_the_first_callers_short_deadline(fakes, make_drawn):
    entrants = [f"user-{i}" for i in range(30)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=3)
    fakes.lottery.page_size = 10  # three pages
    fakes.lottery.VerifyDraw = honouring_timeouts(fakes.lottery.VerifyDraw, 0.05)
    hurried = asyncio.ensure_future(fakes.gateway.draw_results("alice", "2026-01-28", fakes.options(0.08)))
    patient = asyncio.ensure_future(_later(0.01, fakes.gateway.draw_results("bob", "2026-01-28", fakes.options(5))))
    done = await asyncio.gather(hurried, patient, return_exceptions=True)
    # The hurried caller's share of its deadline passed: it is shown the results unverified.
    assert not isinstance(done[0], BaseException), done[0]
    assert not done[0].results.verified and done[0].results.verification_note
    # The patient one, who joined the same check, is answered: verified.
    assert not isinstance(done[1], BaseException), done[1]
    assert done[1].results.verified, done[1].results.verification_note


async def test_a_wallet_joining_a_hurried_callers_draw_read_still_shows_todays_entry(fakes):
    fakes.card.invites["bob"] = 3  # qualified
    fakes.lottery.entries.append(lottery_pb2.Entry(campaign_id="spring-2026", day="2026-01-28", user_id="bob"))
    await fakes.gateway.wallet_view("carol", fakes.options())  # the campaign is cached
    fakes.clock.advance(10)  # the draw is not
    fakes.lottery.GetDraw = honouring_timeouts(fakes.lottery.GetDraw, 0.03)
    hurried = asyncio.ensure_future(fakes.gateway.wallet_view("alice", fakes.options(0.04)))
    patient = asyncio.ensure_future(_later(0.005, fakes.gateway.wallet_view("bob", fakes.options(5))))
    _, bob = await asyncio.gather(hurried, patient, return_exceptions=True)
    assert not isinstance(bob, BaseException), bob
    assert bob.lottery.qualified and bob.lottery.entered_today


async def test_a_wallet_joining_a_hurried_callers_campaign_read_counts_the_day_in_the_campaigns_zone(fakes):
    # The campaign runs on UTC: at 2026-01-28 20:00 UTC it is already the 29th in Shanghai.
    from datetime import datetime, timezone

    fakes.clock.set(datetime(2026, 1, 28, 20, 0, tzinfo=timezone.utc))
    fakes.card.time_zone = "UTC"
    fakes.card.GetCampaign = honouring_timeouts(fakes.card.GetCampaign, 0.03)
    hurried = asyncio.ensure_future(fakes.gateway.wallet_view("alice", fakes.options(0.02)))
    patient = asyncio.ensure_future(_later(0.005, fakes.gateway.wallet_view("bob", fakes.options(5))))
    _, bob = await asyncio.gather(hurried, patient, return_exceptions=True)
    assert not isinstance(bob, BaseException), bob
    assert bob.lottery.day == "2026-01-28"


async def test_a_shared_read_is_still_given_up_once_every_caller_has_gone(fakes):
    fakes.lottery.GetDraw = honouring_timeouts(fakes.lottery.GetDraw, 10)  # a lottery that answers nothing
    started = asyncio.get_running_loop().time()
    view = await fakes.gateway.wallet_view("alice", fakes.options(0.2))
    assert not view.lottery.entered_today
    assert asyncio.get_running_loop().time() - started < 0.5
    await asyncio.sleep(0)
    assert fakes.gateway._draws._inflight == {}  # nobody waits: the read was cancelled
