"""Campaign zones this host cannot load, and draw checks (off the loop, kept, keyed by winners), against the in-memory fakes."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "Asia/" + "x" * 300])
async def test_a_campaign_zone_this_host_cannot_load_keeps_the_default_zone_instead_of_failing_every_wallet(fakes, zone):
    # The card service validated the zone on its own host; the gateway's zone database may be
    # older (a zone named since) or the campaign older than the validation. Only the day's label
    # depends on it, so the wallet is served with the default zone, as the lottery does.
    fakes.card.time_zone = zone
    fakes.clock.set(datetime(2026, 1, 27, 20, 0, tzinfo=timezone.utc))  # 28 Jan in Shanghai
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert view.lottery.day == "2026-01-28"
    joined = await fakes.gateway.join("bob", "r1", "", fakes.options())
    assert joined.newly_joined and joined.wallet.lottery.day == "2026-01-28"


async def test_verifying_a_big_drawn_day_does_not_stop_the_gateway_answering_meanwhile(fakes, make_drawn):
    # The check hashes every entrant (HMAC) and ranks them: run on the event loop it held it for
    # the whole check, ~0.5 s per 100,000 entrants here (5 s for the 1,000,000 a popular day may
    # have), at 20:00, when the whole country asks for the results. Every call in flight meanwhile
    # (orders, health checks) waited on it. The loop must keep turning while a day is verified.
    entrants = [f"user-{i:07d}" for i in range(200_000)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=15)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    reply = await fakes.gateway.draw_results(entrants[0], "2026-01-28", fakes.options(60))
    done.set()
    await ticking
    assert reply.results.verified, reply.results.verification_note
    assert max(gaps) < 0.4, f"the event loop stood still for {max(gaps):.2f} s while the draw was verified"


async def test_a_check_its_callers_gave_up_on_is_still_kept_for_the_next_caller(fakes, make_drawn):
    # Out of the event loop the check can outlast its callers (their deadlines): what it finds is
    # kept, not thrown away to be paged and checked again by each caller after them.
    entrants = [f"user-{i:07d}" for i in range(200_000)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=15)
    pages = -(-len(entrants) // fakes.lottery.page_size)
    asking = asyncio.ensure_future(fakes.gateway.draw_results(entrants[0], "2026-01-28", fakes.options(60)))
    while len(fakes.lottery.requests("VerifyDraw")) < pages:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)  # checking now
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    for _ in range(1000):
        if fakes.gateway._verified._values:
            break
        await asyncio.sleep(0.01)
    reply = await fakes.gateway.draw_results(entrants[1], "2026-01-28", fakes.options())
    assert reply.results.verified, reply.results.verification_note
    assert len(fakes.lottery.requests("VerifyDraw")) == pages  # not paged again


async def test_winners_changed_after_a_day_was_verified_are_not_shown_as_verified(fakes, make_drawn):
    # The point of the gateway's own check is to catch a lottery publishing other winners than
    # its seed gives (a tampered store, a bad restore). The check was kept for the day alone, so
    # once a day had verified, any winners published for it later were shown "verified" for a week.
    entrants = [f"user-{i}" for i in range(25)]
    fakes.lottery.draw, fakes.lottery.verify = make_drawn(entrants, winner_count=3)
    first = await fakes.gateway.draw_results("user-0", "2026-01-28", fakes.options())
    assert first.results.verified
    outsider = next(u for u in entrants if u not in fakes.lottery.draw.winners)
    fakes.lottery.draw.winners[0] = outsider  # the published winners change behind the seed's back
    again = await fakes.gateway.draw_results(outsider, "2026-01-28", fakes.options())
    assert again.results.caller_won
    assert not again.results.verified, again.results.verification_note
