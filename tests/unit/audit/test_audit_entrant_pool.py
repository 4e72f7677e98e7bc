"""The audit asks each drawn day's entrant's invites one by one (GetInviteStats): with a fixed
pool of workers, not one task per entrant (a million entrants held ~1.5 GB of tasks at once)."""
from __future__ import annotations

import asyncio

import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cs
from services.audit.fetch import _people
from services.audit.model import AuditFacts, DrawFacts
from services.audit.pool import map_bounded

CID = "spring-2026"
BOUND = 8


class PeakMeter:
    """Counts what is in flight at once: calls, and the tasks of the event loop."""

    def __init__(self) -> None:
        self.calls = self.peak_calls = self.peak_tasks = 0

    async def around(self, coro):
        self.calls += 1
        self.peak_calls = max(self.peak_calls, self.calls)
        self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
        try:
            await asyncio.sleep(0)  # everyone started so far gets to start too
            return await coro
        finally:
            self.calls -= 1


class FakeReader:
    """The fetcher's reader without its gate: the bound must come from the fetcher itself."""

    def __init__(self, meter: PeakMeter) -> None:
        self.meter = meter
        self.concurrency = BOUND

    async def call(self, fn, request):
        async def answer():
            return fn(request)

        return await self.meter.around(answer())


class FakeCards:
    def __init__(self, entrants: list[str]) -> None:
        self.entrants = entrants
        self.asked: list[str] = []

    def ListCampaignMembers(self, request):
        return cs.ListCampaignMembersResponse(
            members=[cs.CampaignMember(user_id=u, cards_granted=0, invites_made=3) for u in self.entrants]
        )

    def ListCampaignInvites(self, request):
        return cs.ListCampaignInvitesResponse()

    def GetInviteStats(self, request):
        self.asked.append(request.user_id)
        # Each entrant's own count, so results that went to the wrong user would show.
        n = int(request.user_id.removeprefix("u")) % 5
        invites = [
            card_pb2.Invite(inviter_user_id=request.user_id, invitee_user_id=f"{request.user_id}-f{i}") for i in range(n)
        ]
        return cs.GetInviteStatsResponse(invited_count=n, invites=invites)


def _facts(entrants: list[str]) -> AuditFacts:
    draw = DrawFacts(campaign_id=CID, day="2026-02-01", status="DRAWN", winner_count=1, winners=(), entrants=tuple(entrants))
    return AuditFacts(draws=[draw])


async def test_a_drawn_days_entrants_are_asked_by_a_fixed_pool_with_the_same_results():
    entrants = [f"u{i:05d}" for i in range(2_000)]
    meter, cards, facts = PeakMeter(), FakeCards(entrants), _facts(entrants)
    baseline = len(asyncio.all_tasks())

    await _people(FakeReader(meter), cards, CID, facts)

    assert meter.peak_calls <= BOUND
    assert meter.peak_tasks - baseline <= BOUND
    assert sorted(cards.asked) == entrants
    by_user = {s.user_id: s for s in facts.inviters[CID]}
    assert sorted(by_user) == entrants
    for user in entrants:
        n = int(user.removeprefix("u")) % 5
        assert by_user[user].invited_count == n
        assert [i.invitee_user_id for i in by_user[user].invites] == [f"{user}-f{i}" for i in range(n)]


async def test_map_bounded_keeps_order_and_never_runs_more_than_its_workers():
    meter = PeakMeter()

    async def double(x: int) -> int:
        async def work():
            await asyncio.sleep(0.001 * (x % 3))  # finishing out of order
            return 2 * x

        return await meter.around(work())

    assert await map_bounded(double, range(100), workers=4) == [2 * x for x in range(100)]
    assert meter.peak_calls == 4
    # A small job starts no idle workers.
    assert await map_bounded(double, [1, 2], workers=16) == [2, 4]
    assert await map_bounded(double, [], workers=16) == []


async def test_map_bounded_raises_the_first_failure_and_leaves_no_worker_running():
    started: list[int] = []

    async def fail_on_three(x: int) -> int:
        started.append(x)
        if x == 3:
            raise ValueError("three")
        await asyncio.sleep(0.01)
        return x

    before = len(asyncio.all_tasks())
    with pytest.raises(ValueError, match="three"):
        await map_bounded(fail_on_three, range(1_000), workers=4)
    assert len(asyncio.all_tasks()) == before
    assert len(started) < 1_000
