"""A drawn day's check pages every entrant into the gateway's memory (a popular day has a
million) and recomputes the draw on a worker thread. Checks of the same day are shared, but
each other day had one of its own: one account asking GetDrawResults for twenty past days at
once (its burst) had twenty checks running together, twenty entrant lists held and twenty
threads contending with the event loop for the GIL. Checks run a couple at a time; the others
wait their turn within their callers' deadlines."""
from __future__ import annotations

import asyncio
import threading
import time

from miandan.lottery.v1 import lottery_service_pb2

import gateway.compose as compose


async def test_checks_of_many_days_asked_at_once_run_a_few_at_a_time(fakes, make_drawn, monkeypatch):
    days = [f"2026-01-{d:02d}" for d in range(10, 22)]
    published = {}
    for day in days:
        draw, verify = make_drawn([f"user-{day}-{i}" for i in range(20)], winner_count=3)
        draw.day = day
        published[day] = (draw, verify)
    active: set[str] = set()
    peak = 0
    lock = threading.Lock()

    async def get_draw(request, **kw):
        return lottery_service_pb2.GetDrawResponse(draw=published[request.day][0])

    async def verify_draw(request, **kw):
        nonlocal peak
        draw, verify = published[request.day]
        with lock:
            active.add(request.day)
            peak = max(peak, len(active))
        await asyncio.sleep(0.01)
        fields = {k: v for k, v in verify.items()}
        return lottery_service_pb2.VerifyDrawResponse(draw=draw, **fields)

    real_check = compose.check_draw

    def check(**kw):
        time.sleep(0.01)
        result = real_check(**kw)
        with lock:
            active.discard(kw["entrants"][0].removeprefix("user-").rsplit("-", 1)[0])
        return result

    fakes.lottery.GetDraw, fakes.lottery.VerifyDraw = get_draw, verify_draw
    monkeypatch.setattr(compose, "check_draw", check)
    replies = await asyncio.gather(*(fakes.gateway.draw_results("mallory", day, fakes.options(5)) for day in days))
    assert all(r.results.verified for r in replies), [r.results.verification_note for r in replies]
    assert peak <= compose.CONCURRENT_DRAW_CHECKS, f"{peak} days checked at once"


async def test_a_check_its_callers_gave_up_on_keeps_its_place_until_its_thread_ends(fakes, make_drawn, monkeypatch):
    fakes.lottery.draw, fakes.lottery.verify = make_drawn([f"user-{i}" for i in range(20)], winner_count=3)
    release = threading.Event()
    real_check = compose.check_draw

    def slow_check(**kw):
        release.wait(5)
        return real_check(**kw)

    monkeypatch.setattr(compose, "check_draw", slow_check)
    call = asyncio.ensure_future(fakes.gateway.draw_results("alice", "2026-01-28", fakes.options(5)))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if fakes.gateway._checking._value < compose.CONCURRENT_DRAW_CHECKS:
            break
    call.cancel()  # the only caller leaves while the thread checks
    await asyncio.gather(call, return_exceptions=True)
    assert fakes.gateway._checking._value == compose.CONCURRENT_DRAW_CHECKS - 1  # still held by the thread
    release.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if fakes.gateway._checking._value == compose.CONCURRENT_DRAW_CHECKS:
            break
    assert fakes.gateway._checking._value == compose.CONCURRENT_DRAW_CHECKS
    reply = await fakes.gateway.draw_results("bob", "2026-01-28", fakes.options(5))
    assert reply.results.verified  # what the thread found was kept
