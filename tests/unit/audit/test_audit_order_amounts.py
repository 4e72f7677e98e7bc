"""DISCOUNT_ABOVE_SUBTOTAL and PAYABLE_NEGATIVE: the card pays at most what the order costs, and
money never a negative amount (order.proto: card_discount_fen = min(subtotal, face value),
payable_fen = subtotal - discount)."""
from __future__ import annotations

from miandan.order.v1 import order_pb2
from services.audit.fetch import order_facts
from services.audit.model import (
    AuditFacts,
    BudgetFacts,
    CampaignFacts,
    CardFacts,
    OrderFacts,
    audit,
    check_order_amounts,
)

CID = "spring-2026"
FACE = 2_500


def order(order_id: str, *, subtotal: int, discount: int = 0, payable: int | None = None, card_id: str = "c1") -> OrderFacts:
    return OrderFacts(
        order_id=order_id, user_id="alice", status="PAID", card_id=card_id if discount else "", campaign_id=CID,
        card_discount_fen=discount, subtotal_fen=subtotal, payable_fen=subtotal - discount if payable is None else payable,
    )


def test_a_card_discount_above_the_subtotal_is_found_with_the_order_id():
    found = check_order_amounts([order("o1", subtotal=1_800, discount=2_500)])
    assert [(f.check, f.ids["order_id"], f.ids["card_id"]) for f in found] == [("DISCOUNT_ABOVE_SUBTOTAL", "o1", "c1")]
    assert "2500" in found[0].message and "1800" in found[0].message


def test_a_negative_payable_is_found_with_the_order_id():
    found = check_order_amounts([order("o2", subtotal=-60, payable=-60)])
    assert [(f.check, f.ids["order_id"]) for f in found] == [("PAYABLE_NEGATIVE", "o2")]


def test_a_card_that_covers_the_whole_order_or_part_of_it_or_no_card_is_no_finding():
    assert check_order_amounts([
        order("free", subtotal=2_500, discount=2_500),
        order("part", subtotal=3_200, discount=2_500),
        order("small", subtotal=1_800, discount=1_800),
        order("cash", subtotal=3_200),
    ]) == []


def test_the_full_audit_reports_it_once_beside_a_consistent_card():
    card = CardFacts("c1", CID, "alice", "REDEEMED", "SIGNUP", FACE, order_id="o1")
    facts = AuditFacts(
        campaigns=[CampaignFacts(campaign_id=CID, budget_fen=10_000, per_user_card_cap=3)],
        budgets={CID: BudgetFacts(CID, 10_000, FACE, 0, FACE, 10_000 - FACE, 1)},
        cards=[card],
        orders=[order("o1", subtotal=1_800, discount=FACE)],
    )
    assert [(f.check, f.ids["order_id"]) for f in audit(facts)] == [("DISCOUNT_ABOVE_SUBTOTAL", "o1")]


def test_the_fetched_order_carries_its_subtotal_and_payable():
    facts = order_facts(order_pb2.Order(order_id="o1", card_id="c1", card_discount_fen=2_500, subtotal_fen=1_800, payable_fen=-700))
    assert (facts.subtotal_fen, facts.card_discount_fen, facts.payable_fen) == (1_800, 2_500, -700)
