"""GetBudget reads kept totals instead of every card of the campaign; it must still say exactly
what summing the cards by the state they are really in says, whatever the calls, the clock and
the sweep did. The oracle is the whole-campaign scan GetBudget used before (see the store's
migration 4), run on the same SQLite file."""
import asyncio
import sqlite3

import grpc

from services.card.store import MIGRATIONS, SqliteCardStore
from services.common.clock import to_ms

C, D = "spring", "summer"
STATES = ("reserved_fen", "redeemed_fen", "expired_fen")
_NUMBER = {"reserved_fen": 2, "redeemed_fen": 3, "expired_fen": 4}


def scanned(db_path, campaign_id: str, now_ms: int) -> dict[str, int]:
    """Face value per effective state, summed over every card (GetBudget's old query)."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT CASE WHEN state = 2 AND reserved_until_ms > :now THEN 2"
            " WHEN state IN (1, 2) AND expire_ms <= :now THEN 4"
            " WHEN state = 2 THEN 1 ELSE state END AS s, SUM(face_value_fen)"
            " FROM cards WHERE campaign_id = :cid GROUP BY s",
            {"now": now_ms, "cid": campaign_id},
        ).fetchall()
    by_state = dict(rows)
    return {name: by_state.get(n, 0) for name, n in _NUMBER.items()}


async def reported(card, campaign_id: str) -> dict[str, int]:
    budget = (await card.GetBudget(campaign_id=campaign_id)).budget
    return {name: getattr(budget, name) for name in STATES}


async def agree(card, settings, clock, campaign_id: str) -> dict[str, int]:
    got = await reported(card, campaign_id)
    assert got == scanned(settings.db_path, campaign_id, to_ms(clock.now())), campaign_id
    return got


async def test_totals_agree_with_the_cards_through_holds_redeems_refunds_lapses_and_sweeps(card_server, clock):
    server, card, settings = card_server
    await card.campaign(C, card_validity_days=1)
    await card.campaign(D, card_validity_days=3)
    users = [f"u{n}" for n in range(40)]
    await asyncio.gather(*(card.ClaimSignupCard(campaign_id=C, user_id=u) for u in users))
    await asyncio.gather(*(card.ClaimSignupCard(campaign_id=D, user_id=u) for u in users[:10]))
    untouched = await agree(card, settings, clock, D)

    # All at once: holds, direct redeems, and a second hold racing for the same user's one card.
    calls = [card.ReserveCard(campaign_id=C, user_id=u, order_id=f"o{n}", amount_fen=1000, ttl_seconds=60) for n, u in enumerate(users[:30])]
    calls += [card.ReserveCard(campaign_id=C, user_id=u, order_id=f"r{n}", amount_fen=2000, redeem=True) for n, u in enumerate(users[30:35])]
    calls += [card.ReserveCard(campaign_id=C, user_id=u, order_id=f"x{n}", amount_fen=500, ttl_seconds=60) for n, u in enumerate(users[:30])]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, grpc.aio.AioRpcError) or r.reservation.order_id for r in results)
    held = [r.reservation.order_id for r in results[:30] if not isinstance(r, BaseException)]
    assert len(held) >= 15
    before = await agree(card, settings, clock, C)
    assert before["reserved_fen"] > 0 and before["redeemed_fen"] == 5 * 2500

    confirm, release, keep = held[:10], held[10:14], held[14:]
    await asyncio.gather(
        *(card.ConfirmReservation(order_id=o) for o in confirm),
        *(card.ReleaseReservation(order_id=o) for o in release),
    )
    await asyncio.gather(*(card.RefundCard(order_id=o) for o in confirm[:5]))
    mid = await agree(card, settings, clock, C)
    assert mid["redeemed_fen"] == (5 + 5) * 2500

    clock.advance(61)  # the kept holds lapse; only the sweep will store that
    lapsed = await agree(card, settings, clock, C)
    assert lapsed["reserved_fen"] == 0 and keep
    await server.card_store.sweep(to_ms(clock.now()))
    assert await agree(card, settings, clock, C) == lapsed

    clock.advance(days=2)  # every card of C still available is past its validity
    expired = await agree(card, settings, clock, C)
    assert expired["expired_fen"] > 0
    for _ in range(2):
        await server.card_store.sweep(to_ms(clock.now()), limit=7)  # part of them at a time
        assert await agree(card, settings, clock, C) == expired
    assert await agree(card, settings, clock, D) == untouched


async def test_a_store_from_before_the_totals_gets_them_from_its_cards(card_server, clock, tmp_path):
    server, card, settings = card_server
    await card.campaign(C)
    await asyncio.gather(*(card.ClaimSignupCard(campaign_id=C, user_id=f"u{n}") for n in range(12)))
    await card.ReserveCard(campaign_id=C, user_id="u0", order_id="o0", amount_fen=1000)
    await card.ReserveCard(campaign_id=C, user_id="u1", order_id="o1", amount_fen=1000, redeem=True)
    expected = await agree(card, settings, clock, C)
    await server.stop(1.0)

    # As a store written by the previous version: no totals table, no triggers, version 4.
    with sqlite3.connect(settings.db_path) as conn:
        conn.executescript(
            "DROP TRIGGER campaigns_totals; DROP TRIGGER cards_totals_grant; DROP TRIGGER cards_totals_move;"
            " DROP TABLE card_totals; DROP TABLE card_states;"
            f" PRAGMA user_version = {len(MIGRATIONS) - 1};"
        )
    store = await SqliteCardStore.open(settings.db_path, clock=clock)
    try:
        campaign = await store.get_campaign(C)
        data = await store.budget(campaign, to_ms(clock.now()))
    finally:
        await store.close()
    got = {name: data.by_state.get(n, 0) for name, n in _NUMBER.items()}
    assert got == expected and data.cards_issued == 12


async def test_every_card_state_has_a_total_in_every_campaign(card_server):
    # A move into a state without its row would be lost: a new CardState needs a migration.
    from services.card.model import CardState

    _, card, settings = card_server
    await card.campaign(C)
    with sqlite3.connect(settings.db_path) as conn:
        states = {s for (s,) in conn.execute("SELECT state FROM card_totals WHERE campaign_id = ?", (C,))}
    assert states == {int(s) for s in CardState}
