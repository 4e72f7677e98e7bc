"""CommitDraw's and RunDraw's request_id is an idempotency key: a replay of a call that
succeeded is answered with the day it named, as that day is now (never applied again, even
after the cut-off or a later amendment); the same key for another day or other content is
ALREADY_EXISTS REQUEST_ID_REUSED with nothing applied. Over real gRPC, a real SQLite store and a
FakeClock (conftest.py)."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import grpc
import pytest

from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2 as pb
from services.common.errors import error_details

CAMPAIGN = "spring-2026"
DAY, NEXT_DAY, DAY_3, DAY_4 = "2026-01-28", "2026-01-29", "2026-01-30", "2026-01-31"
REUSED = ("ALREADY_EXISTS", "REQUEST_ID_REUSED")


def commit(lot, rid, day, **fields):
    return lot.stub.CommitDraw(
        pb.CommitDrawRequest(request_id=rid, campaign_id=CAMPAIGN, day=day, **fields), metadata=lot.admin, timeout=10
    )


def run(lot, rid, day, beacon=""):
    return lot.stub.RunDraw(
        pb.RunDrawRequest(request_id=rid, campaign_id=CAMPAIGN, day=day, beacon_value=beacon), metadata=lot.admin, timeout=10
    )


async def draw_of(lot, day):
    return (await lot.stub.GetDraw(pb.GetDrawRequest(campaign_id=CAMPAIGN, day=day), metadata=lot.md)).draw


async def refused(call):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code().name, error_details(err.value)["reason"]


async def race(calls):
    results = await asyncio.gather(*calls, return_exceptions=True)
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[(r.code().name, error_details(r)["reason"])] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r.draw)
    return answers, reasons


async def test_a_commit_request_id_reused_for_another_day_or_content_is_refused(lottery):
    first = (await commit(lottery, "x", NEXT_DAY, winner_count=3)).draw
    assert first.day == NEXT_DAY and first.winner_count == 3 and first.commitment
    assert await refused(commit(lottery, "x", DAY_3, winner_count=3)) == REUSED
    assert await refused(commit(lottery, "x", NEXT_DAY, winner_count=5)) == REUSED
    assert await refused(commit(lottery, "x", NEXT_DAY)) == REUSED
    assert (await draw_of(lottery, DAY_3)).commitment == ""  # never committed
    assert (await draw_of(lottery, NEXT_DAY)).winner_count == 3
    assert (await commit(lottery, "x", NEXT_DAY, winner_count=3)).draw == first


async def test_a_commit_replayed_after_an_amendment_and_the_cutoff_answers_the_day_as_it_is(lottery, clock):
    first = (await commit(lottery, "x", DAY, winner_count=3)).draw
    amended = (await commit(lottery, "y", DAY, winner_count=5)).draw
    assert amended.winner_count == 5 and amended.commitment == first.commitment
    # The replay of x neither undoes y's amendment nor is refused for it.
    replay = (await commit(lottery, "x", DAY, winner_count=3)).draw
    assert replay.winner_count == 5 and replay.commitment == first.commitment
    clock.advance(timedelta(hours=10, minutes=1).total_seconds())  # past the 20:00 cut-off
    replay = (await commit(lottery, "x", DAY, winner_count=3)).draw
    assert replay.winner_count == 5 and replay.status == lottery_pb2.DRAW_STATUS_CLOSED
    # A new request asking for a change after the cut-off is still refused.
    assert await refused(commit(lottery, "z", DAY, winner_count=3)) == ("FAILED_PRECONDITION", "ENTRIES_CLOSED")


async def test_a_commit_replayed_for_today_after_midnight_answers_the_day_it_committed(lottery, clock):
    first = (await commit(lottery, "t", "", prize_name="奶茶卡")).draw
    assert first.day == DAY
    clock.advance(timedelta(days=1).total_seconds())
    replay = (await commit(lottery, "t", "", prize_name="奶茶卡")).draw
    assert replay.day == DAY and replay.commitment == first.commitment


async def test_a_run_request_id_reused_for_another_day_is_refused_and_its_replay_answers(lottery, clock):
    await commit(lottery, "c28", DAY)
    await commit(lottery, "c29", NEXT_DAY)
    clock.advance(timedelta(days=1, hours=10, minutes=1).total_seconds())  # past both cut-offs
    drawn = (await run(lottery, "r", DAY)).draw
    assert drawn.status == lottery_pb2.DRAW_STATUS_DRAWN and drawn.day == DAY
    assert await refused(run(lottery, "r", NEXT_DAY)) == REUSED
    assert await refused(run(lottery, "r", DAY, beacon="ab" * 16)) == REUSED
    assert (await draw_of(lottery, NEXT_DAY)).status == lottery_pb2.DRAW_STATUS_CLOSED  # not drawn
    clock.advance(3600)
    assert (await run(lottery, "r", DAY)).draw == drawn
    # A refused run leaves its request_id unused; one and the same id may serve a CommitDraw.
    assert await refused(run(lottery, "r2", "2026-02-01")) == ("NOT_FOUND", "DRAW_NOT_FOUND")
    assert (await run(lottery, "r2", NEXT_DAY)).draw.status == lottery_pb2.DRAW_STATUS_DRAWN
    assert (await run(lottery, "c29", NEXT_DAY)).draw.status == lottery_pb2.DRAW_STATUS_DRAWN


async def test_twenty_concurrent_commits_under_one_request_id_apply_one(lottery):
    variants = [(DAY_3, 3), (DAY_4, 3), (DAY_3, 4), (NEXT_DAY, 3)]
    answers, reasons = await race(
        commit(lottery, "z", variants[i % 4][0], winner_count=variants[i % 4][1]) for i in range(20)
    )
    assert set(reasons) <= {REUSED}, reasons
    assert len(answers) == 5 and sum(reasons.values()) == 15
    assert len({(d.day, d.winner_count, d.commitment) for d in answers}) == 1
    winner = answers[0]
    committed = {day: (await draw_of(lottery, day)) for day in (NEXT_DAY, DAY_3, DAY_4)}
    assert [day for day, d in committed.items() if d.commitment] == [winner.day]
    assert committed[winner.day].winner_count == winner.winner_count


async def test_twenty_concurrent_runs_under_one_request_id_draw_one_day(lottery, clock):
    for day in (NEXT_DAY, DAY_3):
        await commit(lottery, f"c-{day}", day)
    clock.advance(timedelta(days=2, hours=10, minutes=1).total_seconds())  # past both cut-offs
    answers, reasons = await race(run(lottery, "r", (NEXT_DAY, DAY_3)[i % 2]) for i in range(20))
    assert set(reasons) <= {REUSED}, reasons
    assert len(answers) == 10 and sum(reasons.values()) == 10
    assert len({(d.day, d.seed, tuple(d.winners)) for d in answers}) == 1
    statuses = {day: (await draw_of(lottery, day)).status for day in (NEXT_DAY, DAY_3)}
    assert statuses[answers[0].day] == lottery_pb2.DRAW_STATUS_DRAWN
    assert sorted(statuses.values()) == sorted([lottery_pb2.DRAW_STATUS_DRAWN, lottery_pb2.DRAW_STATUS_CLOSED])
