"""GetDrawResults at 20:00: the draw (its winners, whether the caller won) is in hand after one
GetDraw; the gateway's own check of it pages every entrant (a popular day has a million) and
recomputes the draw, which takes seconds, and the lottery is at its busiest. A check that had not
finished by the caller's deadline, or whose pages the lottery refused, failed the whole call:
"did I win?" answered DEADLINE_EXCEEDED or OVERLOADED although the winners were known."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import Unavailable


async def test_a_check_still_running_at_the_callers_deadline_answers_the_results_unverified(fakes, make_drawn):
    entrants = [f"user-{i}" for i in range(20)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=3)
    paging = asyncio.Event()
    real_verify = fakes.lottery.VerifyDraw

    async def slow_verify(request, **kw):
        await paging.wait()  # a million entrants being paged
        return await real_verify(request, **kw)

    fakes.lottery.VerifyDraw = slow_verify
    winner = fakes.lottery.draw.winners[0]
    reply = await fakes.gateway.draw_results(winner, "2026-01-28", fakes.options(0.3))
    assert reply.results.caller_won and list(reply.results.draw.winners) == list(fakes.lottery.draw.winners)
    assert not reply.results.verified and reply.results.verification_note
    paging.set()  # the check goes on for the callers after this one, and is kept
    for _ in range(200):
        if fakes.gateway._verified._values:
            break
        await asyncio.sleep(0.01)
    again = await fakes.gateway.draw_results(entrants[1], "2026-01-28", fakes.options())
    assert again.results.verified, again.results.verification_note


async def test_a_check_whose_callers_all_left_while_it_paged_is_finished_and_kept(fakes, make_drawn):
    # A caller on a short deadline, one at a time (a past day asked late in the evening): each
    # left while the entrants were paged, the paging was cancelled with it, and the next caller
    # paged from the first entrant again: a day whose paging outlasts a caller's deadline was
    # never shown verified, and the lottery paged it whole for every caller.
    entrants = [f"user-{i}" for i in range(25)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=3)
    fakes.lottery.page_size = 10
    paging = asyncio.Event()
    real_verify = fakes.lottery.VerifyDraw

    asked: list[str] = []

    async def slow_verify(request, **kw):
        asked.append(request.page_token)
        if request.page_token:
            await paging.wait()
        return await real_verify(request, **kw)

    fakes.lottery.VerifyDraw = slow_verify
    first = asyncio.ensure_future(fakes.gateway.draw_results("user-0", "2026-01-28", fakes.options(5)))
    while len(asked) < 2:
        await asyncio.sleep(0.001)
    first.cancel()  # the only caller leaves (its deadline, its phone) on the second page
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(fakes.gateway.draw_results("user-1", "2026-01-28", fakes.options(5)))
    await asyncio.sleep(0.01)  # the next caller comes while the pages are still read
    paging.set()
    assert (await second).results.verified
    third = await fakes.gateway.draw_results("user-2", "2026-01-28", fakes.options())
    assert third.results.verified, third.results.verification_note
    assert asked == ["", "10", "20"]  # the three pages once, not again from the first


async def test_a_lottery_refusing_the_checks_pages_still_answers_the_results_unverified(fakes, make_drawn, make_rpc_error):
    entrants = [f"user-{i}" for i in range(20)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=3)
    fakes.lottery.fail["VerifyDraw"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 2000))
    winner = fakes.lottery.draw.winners[0]
    reply = await fakes.gateway.draw_results(winner, "2026-01-28", fakes.options())
    assert reply.results.caller_won
    assert not reply.results.verified and reply.results.verification_note
    del fakes.lottery.fail["VerifyDraw"]  # a refusal is not kept: the next caller checks
    again = await fakes.gateway.draw_results(winner, "2026-01-28", fakes.options())
    assert again.results.verified, again.results.verification_note


async def test_a_lottery_refusing_the_draw_itself_still_fails_the_call(fakes, make_rpc_error):
    fakes.lottery.fail["GetDraw"] = make_rpc_error(Unavailable("OVERLOADED", "busy", 2000))
    with pytest.raises(Exception) as info:
        await fakes.gateway.draw_results("alice", "2026-01-28", fakes.options())
    assert "busy" in str(info.value)
