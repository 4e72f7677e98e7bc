"""The card store's disk fills up mid-campaign: callers hear UNAVAILABLE / STORE_UNAVAILABLE
with a retry delay (not an INTERNAL that reads as a bug), nothing half-written remains, and
once there is space again the same calls succeed."""
import gc

import grpc
import pytest

from services.common.db import Database
from services.common.errors import error_details

C = "spring"


async def set_page_cap(settings, pages):
    """max_page_count on the store's writer connection: SQLite then answers SQLITE_FULL, as on
    a full disk. The server keeps its Database to itself, hence the search."""
    [db] = [o for o in gc.get_objects() if isinstance(o, Database) and o.path == settings.db_path]
    await db._writer._execute(lambda c: c.execute(f"PRAGMA max_page_count={pages}"), db._writer._conn)


async def test_a_full_disk_is_store_unavailable_and_the_calls_succeed_once_there_is_space(card_server):
    _, card, settings = card_server
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    await set_page_cap(settings, 1)  # SQLite keeps the file's current size: not one page more
    users = [f"user-{i:03d}-" + "x" * 100 for i in range(30)]
    refused = []
    for user in users:
        try:
            await card.ClaimSignupCard(campaign_id=C, user_id=user)
        except grpc.aio.AioRpcError as err:
            refused.append((user, err))
    assert refused, "the cap should have been hit"
    for _, err in refused:
        assert err.code() is grpc.StatusCode.UNAVAILABLE, err
        d = error_details(err)
        assert d["reason"] == "STORE_UNAVAILABLE" and d["retry_after_ms"], d
    # Nothing of a refused claim was kept: no card, no spent budget.
    budget_before = (await card.GetBudget(campaign_id=C)).budget
    for user, _ in refused:
        assert not (await card.ListCards(campaign_id=C, user_id=user)).cards
    await set_page_cap(settings, 1_000_000)
    for user, _ in refused:
        claimed = await card.ClaimSignupCard(campaign_id=C, user_id=user)
        assert claimed.cards
    budget_after = (await card.GetBudget(campaign_id=C)).budget
    assert budget_after.issued_fen > budget_before.issued_fen
