"""ListDrawEntries tells each entry's drawn and won from one read: a draw that commits between
the handler's look-up of the day and its read of the entries must not list winners as "won" in
a day "not drawn yet" (ListMyEntries reads both in one statement and tells the user drawn+won)."""
from __future__ import annotations

from datetime import timedelta

from miandan.lottery.v1 import lottery_service_pb2 as pb

CAMPAIGN = "spring-2026"
DAY = "2026-01-28"
CUTOFF_DELTA = timedelta(hours=10)  # 10:00 -> 20:00 Shanghai


async def test_a_draw_run_between_the_day_look_up_and_the_entries_read_lists_a_consistent_page(lottery, card_server, clock):
    users = ["alice", "bob", "carol", "dave"]
    await lottery.stub.CommitDraw(pb.CommitDrawRequest(campaign_id=CAMPAIGN, day=DAY, winner_count=2), metadata=lottery.admin)
    for u in users:
        await card_server.invite(u, 3)
        await lottery.stub.EnterDraw(pb.EnterDrawRequest(campaign_id=CAMPAIGN, user_id=u, day=DAY), metadata=lottery.md)
    clock.advance(CUTOFF_DELTA.total_seconds() + 5)

    store = lottery.server.lottery.store
    real_get_draw = store.get_draw
    ran = []

    async def get_draw_then_a_concurrent_run(campaign_id, day):
        # The handler has read the day (not drawn yet); RunDraw commits before its next read.
        found = await real_get_draw(campaign_id, day)
        if not ran:
            ran.append(await store.run_draw(campaign_id, day, lottery.server.lottery.now_ms(), ""))
        return found

    store.get_draw = get_draw_then_a_concurrent_run
    try:
        resp = await lottery.stub.ListDrawEntries(
            pb.ListDrawEntriesRequest(campaign_id=CAMPAIGN, day=DAY), metadata=lottery.admin
        )
    finally:
        store.get_draw = real_get_draw
    assert ran and len(ran[0].winners) == 2
    told = [(e.user_id, e.drawn, e.won) for e in resp.entries]
    # Never "won" in a day "not drawn".
    assert all(drawn for _, drawn, won in told if won), told
    for e in resp.entries:
        mine = await lottery.stub.ListMyEntries(pb.ListMyEntriesRequest(campaign_id=CAMPAIGN, user_id=e.user_id), metadata=lottery.md)
        assert [(m.drawn, m.won) for m in mine.entries] == [(e.drawn, e.won)]
