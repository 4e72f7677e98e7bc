"""A READY or COMPLETED order the order service kept standing after its card's hold lapsed and the
card went elsewhere (Payment.note CARD_HOLD_LAPSED, services/order/model.py card_hold_lapsed):
still a finding, but one that says so and tells the operator to settle the card part by hand,
instead of blaming the card (CARD_DOUBLE_SPENT) or the order the card is really spent on."""
from __future__ import annotations

from miandan.order.v1 import order_pb2
from services.audit.fetch import order_facts
from services.audit.model import CardFacts, OrderFacts, check_redemptions

CID = "spring-2026"


def card(state: str, order_id: str = "") -> CardFacts:
    return CardFacts("c1", CID, "pia", state, "SIGNUP", 2_500, order_id=order_id)


def order(order_id: str, status: str, note: str = "") -> OrderFacts:
    return OrderFacts(order_id, "pia", status, card_id="c1", campaign_id=CID, card_discount_fen=2_500,
                      subtotal_fen=3_000, payable_fen=500, payment_note=note)


def test_a_lapsed_order_whose_card_paid_another_order_is_one_finding_naming_the_note():
    found = check_redemptions([card("REDEEMED", "o2")], [order("o1", "COMPLETED", "CARD_HOLD_LAPSED"), order("o2", "PAID")])
    assert [(f.check, f.ids["order_id"], f.ids["card_id"]) for f in found] == [("ORDER_CARD_NOT_REDEEMED", "o1", "c1")]
    text = str(found[0])
    assert "CARD_HOLD_LAPSED" in text and "by hand" in text and "order o2" in text and "2500 fen" in text


def test_a_lapsed_order_whose_card_expired_names_the_note_too():
    [finding] = check_redemptions([card("EXPIRED")], [order("o1", "READY", "CARD_HOLD_LAPSED")])
    assert finding.check == "ORDER_CARD_NOT_REDEEMED" and "CARD_HOLD_LAPSED" in finding.message and "EXPIRED" in finding.message


def test_without_the_note_two_live_orders_on_one_card_are_still_a_double_spend():
    found = check_redemptions([card("REDEEMED", "o2")], [order("o1", "COMPLETED"), order("o2", "PAID")])
    assert [f.check for f in found] == ["CARD_DOUBLE_SPENT"]


def test_the_note_on_an_order_that_does_hold_its_card_is_no_finding():
    assert check_redemptions([card("REDEEMED", "o1")], [order("o1", "COMPLETED", "CARD_HOLD_LAPSED")]) == []


def test_the_fetched_order_carries_its_payment_note():
    o = order_pb2.Order(order_id="o1", payment=order_pb2.Payment(note="CARD_HOLD_LAPSED"))
    assert order_facts(o).payment_note == "CARD_HOLD_LAPSED"
