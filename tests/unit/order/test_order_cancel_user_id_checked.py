"""CancelOrder judges its user_id as every other call of the order service does: an id holding a
control character (conventions: ids are joined around them) or longer than an id may be is the
caller's INVALID_ARGUMENT naming `user_id`, not an ORDER_NOT_FOUND that says nothing of why."""
from __future__ import annotations

import pytest

from services.common.errors import DomainError
from services.order import model
from tests.unit.order.test_order_saga import place


@pytest.mark.parametrize(
    "user_id, reason",
    [("u1\x00", "INVALID_ID"), ("u\n1", "INVALID_ID"), ("u\x851", "INVALID_ID"), ("u" * (model.MAX_ID + 1), "FIELD_TOO_LONG")],
)
async def test_a_cancellation_naming_a_malformed_user_id_is_refused_naming_the_field(world, user_id, reason):
    order = await world.service.place_order(place(card_use=model.CARD_NONE))
    with pytest.raises(DomainError) as err:
        await world.service.cancel_order(order.order_id, user_id, "", "c1")
    assert (err.value.code, err.value.reason, err.value.violations[0][0]) == ("INVALID_ARGUMENT", reason, "user_id")
    assert (await world.service.get_order(order.order_id, "u1")).status == model.PENDING_PAYMENT
