"""The order store's write paths: insert-first placement and the no-reload update."""
from __future__ import annotations

from dataclasses import replace

from services.order import model
from services.order.model import Line, Order, Payment
from services.order.store import SqliteOrderStore


def draft(oid="ord_1", request_hash="h1") -> Order:
    return Order(
        order_id=oid, request_id=f"r-{oid}", request_hash=request_hash, user_id="u1", store_id="s1", store_name="S",
        brand_id="b", campaign_id="c", lines=(Line("latte", "Latte", 1, (), 1500, 1500),), subtotal_fen=1500,
        card_use=model.CARD_BEST, requested_card_id="", status=model.PLACING, create_ms=1, update_ms=1,
    )


def pay(cur: Order) -> Order:
    if cur.status != model.PLACING:
        return cur
    return model.with_status(
        cur, model.PAID, 2, model.ACTOR_USER, card_id="c1", card_discount_fen=1500, payable_fen=0,
        payment=Payment(status=model.PAY_NOT_REQUIRED),
    )


async def test_an_update_with_the_current_row_in_hand_writes_the_same_as_one_that_reloads_it(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        placed, fresh = await store.begin_placement(draft("ord_a"))
        assert fresh
        await store.begin_placement(draft("ord_b"))
        fast = await store.update("ord_a", pay, expect=placed)
        slow = await store.update("ord_b", pay)
        assert fast.status == slow.status == model.PAID and fast.version == slow.version
        assert await store.get("ord_a") == fast
        assert replace(await store.get("ord_b"), order_id="ord_a", request_id="r-ord_a") == fast
    finally:
        await store.close()


async def test_an_update_with_a_stale_copy_applies_the_change_to_the_stored_row(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        placed, _ = await store.begin_placement(draft())

        def abort(cur: Order) -> Order:
            return replace(cur, status=model.ABORTED, version=cur.version + 1)

        aborted = await store.update("ord_1", abort)
        # The saga still holds the PLACING copy: its PAID write must not overwrite the abort.
        result = await store.update("ord_1", pay, expect=placed)
        assert result.status == model.ABORTED and result.version == aborted.version
        assert (await store.get("ord_1")).status == model.ABORTED
    finally:
        await store.close()


async def test_a_mutation_that_refuses_the_stale_copy_is_judged_on_the_stored_row(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        placed, _ = await store.begin_placement(draft())
        await store.update("ord_1", pay)

        def needs_paid(cur: Order) -> Order:
            if cur.status != model.PAID:
                raise ValueError("not paid")
            return model.with_status(cur, model.ACCEPTED, 3, model.ACTOR_MERCHANT)

        accepted = await store.update("ord_1", needs_paid, expect=placed)
        assert accepted.status == model.ACCEPTED
    finally:
        await store.close()


async def test_placing_again_returns_the_row_and_other_content_is_refused(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        first, fresh = await store.begin_placement(draft())
        again, fresh_again = await store.begin_placement(draft())
        assert fresh and not fresh_again and again == first
        try:
            await store.begin_placement(draft(request_hash="other"))
        except Exception as exc:
            assert getattr(exc, "reason", "") == "REQUEST_ID_REUSED"
        else:
            raise AssertionError("a different request under the same id must be refused")
    finally:
        await store.close()
