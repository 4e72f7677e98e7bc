"""A card service answering INTERNAL to a reservation (a bug of its own, a batch answered with the
wrong number of results) may have held or redeemed the card all the same: the order service undoes
the key as it does after a timeout. Before, INTERNAL was taken as a refusal: the placement was
aborted with nothing undone, a hold stayed to its TTL and a redeemed card stayed under the aborted
order for good (spent, with no order for it)."""
from __future__ import annotations

from services.common.errors import Internal
from services.order import model

from tests.unit.order.test_order_saga import fails, place


def answers_internal_after_committing(world):
    real = world.card.reserve

    async def reserve(**kw):
        await real(**kw)
        raise Internal("UPSTREAM_ERROR", "card: INTERNAL")

    world.card.reserve = reserve
    return real


async def test_a_card_redeemed_behind_an_internal_answer_finishes_the_order_it_paid(world):
    world.card.grant("c1", "u1")  # covers the latte in full: reserved and redeemed in one call
    real = answers_internal_after_committing(world)
    await fails(world.service.place_order(place(card_use=model.CARD_REQUIRED)), "INTERNAL")
    await world.service.drain()
    # The undo found the card redeemed for the whole order: the order stands, as after a timeout
    # (a REDEEMED card belongs to a PAID order), and the caller's retry is answered with it.
    order = await world.store.get(model.order_id_for("u1", "r1"))
    assert order.status == model.PAID and world.card.cards["c1"].state == "REDEEMED"
    world.card.reserve = real
    retried = await world.service.place_order(place(card_use=model.CARD_REQUIRED))
    assert retried.order_id == order.order_id and retried.status == model.PAID


async def test_a_card_held_behind_an_internal_answer_is_released(world):
    world.card.grant("c1", "u1", face_fen=500)  # covers part: a plain hold
    answers_internal_after_committing(world)
    await fails(world.service.place_order(place(card_use=model.CARD_REQUIRED)), "INTERNAL")
    await world.service.drain()
    assert world.card.cards["c1"].state == "AVAILABLE"
