"""Pure order rules: ids, fingerprints, the money split, the lifecycle table, the sandbox."""
from __future__ import annotations

import pytest

from services.common.errors import DomainError
from services.order import model
from services.order.model import Selection
from services.order.payment import PaymentDeclined, SandboxPaymentProvider


def test_order_ids_are_deterministic_per_user_and_request():
    assert model.order_id_for("u1", "r1") == model.order_id_for("u1", "r1")
    assert model.order_id_for("u1", "r1") != model.order_id_for("u2", "r1")


def test_the_request_fingerprint_changes_with_content_but_not_with_prices():
    a = model.request_hash("u", "s", [Selection("latte", 1)], False, "BEST", "", "c")
    assert a == model.request_hash("u", "s", [Selection("latte", 1)], False, "BEST", "", "c")
    assert a != model.request_hash("u", "s", [Selection("latte", 2)], False, "BEST", "", "c")
    assert a != model.request_hash("u", "s", [Selection("latte", 1)], False, "NONE", "", "c")


@pytest.mark.parametrize("subtotal, covered, expected", [(1500, 1500, (1500, 0)), (3000, 2500, (2500, 500)), (800, 0, (0, 800))])
def test_the_card_pays_at_most_the_subtotal(subtotal, covered, expected):
    assert model.split(subtotal, covered) == expected


def _order(status):
    return model.Order(
        order_id="o", request_id="r", request_hash="h", user_id="u", store_id="s", store_name="S", brand_id="b",
        campaign_id="c", lines=(), subtotal_fen=0, card_use="BEST", requested_card_id="", status=status,
        create_ms=0, update_ms=0,
    )


@pytest.mark.parametrize(
    "status, user_may, merchant_may",
    [
        (model.PENDING_PAYMENT, True, True),
        (model.PAID, True, True),
        (model.ACCEPTED, True, True),
        (model.PREPARING, False, True),
        (model.READY, False, False),
        (model.COMPLETED, False, False),
    ],
)
def test_who_may_cancel_when(status, user_may, merchant_may):
    for actor, allowed in ((model.ACTOR_USER, user_may), (model.ACTOR_MERCHANT, merchant_may)):
        if allowed:
            model.check_cancel(_order(status), actor)
        else:
            with pytest.raises(DomainError):
                model.check_cancel(_order(status), actor)


def test_the_merchant_moves_an_order_one_step_at_a_time():
    model.check_advance(_order(model.PAID), model.ACCEPTED)
    with pytest.raises(DomainError) as info:
        model.check_advance(_order(model.PAID), model.PREPARING)
    assert info.value.reason == "ILLEGAL_TRANSITION"
    with pytest.raises(DomainError):
        model.check_advance(_order(model.PENDING_PAYMENT), model.ACCEPTED)


async def test_the_sandbox_approves_only_references_it_issued_for_that_order_and_amount():
    sandbox = SandboxPaymentProvider("k")
    intent = await sandbox.create_intent("o1", 500)
    assert sandbox.name == "sandbox"
    assert (await sandbox.capture(intent.reference, "o1", 500)).amount_fen == 500
    for ref, order, amount in ((intent.reference, "o2", 500), (intent.reference, "o1", 1), ("sbx_o1.500.forged", "o1", 500)):
        with pytest.raises(PaymentDeclined):
            await sandbox.capture(ref, order, amount)
    other = SandboxPaymentProvider("k")  # a restarted server recognises its own references
    assert (await other.capture(intent.reference, "o1", 500)).payment_id == intent.payment_id
