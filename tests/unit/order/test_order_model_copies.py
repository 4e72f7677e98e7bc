"""The cheaper copies of the placement path give exactly what they replace: `revised` is
dataclasses.replace, and the request fingerprint is still the json.dumps one already stored in
every order row (a changed fingerprint would refuse retries of orders placed before)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from services.order import model
from services.order.model import Line, Order, Payment, PricedOption, Selection, StatusChange


def order() -> Order:
    return Order(
        order_id="ord_1", request_id="r1", request_hash="h", user_id="u1", store_id="s1", store_name="茶饮",
        brand_id="b", campaign_id="c", lines=(Line("latte", "拿铁", 2, (PricedOption("g", "o", "大杯", 200),), 1700, 3400),),
        subtotal_fen=3400, card_use=model.CARD_BEST, requested_card_id="", status=model.PAID, create_ms=1, update_ms=2,
        history=(StatusChange(model.PAID, 2, model.ACTOR_USER),), payment=Payment(status=model.PAY_NOT_REQUIRED),
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"version": 7},
        {"status": model.CANCELLED, "cancel_reason": "x", "card_action": model.CARD_RETURN, "update_ms": 9},
        {"payment": Payment(payment_id="p", amount_fen=5, status=model.PAY_PENDING), "error": ("a", "b", "c")},
    ],
)
def test_a_revised_order_equals_the_dataclass_replace_of_it(changes):
    o = order()
    got, want = model.revised(o, **changes), replace(o, **changes)
    assert got == want and hash(got) == hash(want) and type(got) is Order
    assert got is not o and o == order()  # the original is untouched
    assert vars(got) == vars(want)


def test_a_revised_order_is_still_frozen_and_refuses_unknown_fields():
    got = model.revised(order(), version=3)
    with pytest.raises(AttributeError):
        got.version = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        model.revised(order(), colour="red")


def test_with_status_appends_history_and_bumps_the_version_once():
    o = order()
    accepted = model.with_status(o, model.ACCEPTED, 5, model.ACTOR_MERCHANT, "ok")
    assert accepted == replace(
        o, status=model.ACCEPTED, update_ms=5, version=o.version + 1,
        history=o.history + (StatusChange(model.ACCEPTED, 5, model.ACTOR_MERCHANT, "ok"),),
    )


@pytest.mark.parametrize(
    "user, store, selections, card_use, card_id",
    [
        ("u1", "s1", (Selection("latte", 1),), model.CARD_BEST, ""),
        ("用户", "店\u2028", (Selection("拿铁\"\\", 2, (("g", "o\n\t\x01"),)),), model.CARD_SPECIFIC, "card-1"),
        ("u\x7f", "s", (Selection("a", 1), Selection("é", 99, (("𝄞", "x"),))), model.CARD_NONE, ""),
    ],
)
def test_the_request_fingerprint_is_the_one_stored_before(user, store, selections, card_use, card_id):
    canon = json.dumps(
        [user, store, [s.to_json() for s in selections], False, card_use, card_id, "spring-2026"],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    expected = hashlib.sha256(canon.encode()).hexdigest()[:32]
    assert model.request_hash(user, store, selections, False, card_use, card_id, "spring-2026") == expected
