"""Each sweep pass reads on where the last one stopped: rows whose compensation keeps failing
(a lasting upstream refusal) no longer take every pass's whole batch. Before, a pass read the
first `limit` due rows by order id every time, and that many stuck rows stopped every other
order's expiry and recovery for good."""
from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.order import model

from tests.unit.order.test_order_saga import place


async def test_rows_that_keep_failing_do_not_keep_a_lapsed_order_from_expiring(world):
    # Request ids whose orders sort as wanted: two stuck orders first, the lapsing one last.
    rids = sorted((f"r{n}" for n in range(40)), key=lambda r: model.order_id_for("u1", r))
    stuck_ids, lapsing_id = rids[:2], rids[-1]
    for n, rid in enumerate(stuck_ids):
        world.card.grant(f"c{n}", "u1", face_fen=500)  # covers part: the order waits for payment
        await world.service.place_order(place(rid, card_use=model.CARD_SPECIFIC, card_id=f"c{n}"))
    stuck = {model.order_id_for("u1", r) for r in stuck_ids}
    real_release = world.card.release

    async def refused(key, *, timeout):
        if key.split(".")[0] in stuck:
            raise FailedPrecondition("CARD_SERVICE_SAYS_NO", "a lasting refusal")
        return await real_release(key, timeout=timeout)

    world.card.release = refused
    for oid in stuck:
        cancelled = await world.service.cancel_order(oid, "u1", "")
        assert cancelled.status == model.CANCELLED and cancelled.card_action == model.CARD_RETURN  # still owed
    lapsing = await world.service.place_order(place(lapsing_id, card_use=model.CARD_NONE))
    world.clock.advance(world.service.config.payment_ttl_seconds + 1)
    for _ in range(3):
        await world.service.sweep(limit=2)
    assert (await world.store.get(lapsing.order_id)).status == model.CANCELLED
    assert [(await world.store.get(oid)).card_action for oid in sorted(stuck)] == [model.CARD_RETURN] * 2
