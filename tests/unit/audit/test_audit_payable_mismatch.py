"""PAYABLE_MISMATCH: a paid order (PAID or later) asked money for exactly what its card left,
payable_fen == subtotal_fen - card_discount_fen (order.proto defines payable so; an order has no
fee or other adjustment, and nothing changes the amounts after placement)."""
from __future__ import annotations

import pytest

from services.audit.model import AuditFacts, BudgetFacts, CampaignFacts, CardFacts, OrderFacts, audit, check_order_amounts

CID = "spring-2026"
FACE = 2_500


def order(order_id: str, *, subtotal: int, discount: int = 0, payable: int, status: str = "PAID", note: str = "") -> OrderFacts:
    return OrderFacts(
        order_id=order_id, user_id="alice", status=status, card_id="c1" if discount else "", campaign_id=CID,
        card_discount_fen=discount, subtotal_fen=subtotal, payable_fen=payable, payment_note=note,
    )


@pytest.mark.parametrize("status", ["PAID", "ACCEPTED", "PREPARING", "READY", "COMPLETED"])
def test_a_paid_order_whose_payable_is_not_subtotal_less_discount_is_found_with_the_order_id(status):
    found = check_order_amounts([order("o1", subtotal=3_200, discount=FACE, payable=0, status=status)])
    assert [(f.check, f.ids["order_id"], f.ids["card_id"]) for f in found] == [("PAYABLE_MISMATCH", "o1", "c1")]
    assert "3200" in found[0].message and "2500" in found[0].message and status in found[0].message


def test_an_overcharged_cash_order_is_found_too():
    found = check_order_amounts([order("cash", subtotal=3_200, payable=3_300, status="COMPLETED")])
    assert [(f.check, f.ids["order_id"]) for f in found] == [("PAYABLE_MISMATCH", "cash")]


def test_orders_whose_payable_is_subtotal_less_discount_are_no_finding():
    assert check_order_amounts([
        order("part", subtotal=3_200, discount=FACE, payable=700),
        order("free", subtotal=FACE, discount=FACE, payable=0, status="COMPLETED"),
        order("cash", subtotal=3_200, payable=3_200, status="READY"),
        order("lapsed", subtotal=3_000, discount=FACE, payable=500, status="READY", note="CARD_HOLD_LAPSED"),
    ]) == []


@pytest.mark.parametrize("status", ["UNSPECIFIED", "PENDING_PAYMENT", "CANCELLED"])
def test_orders_not_paid_or_cancelled_are_not_held_to_it(status):
    # An order still being placed (UNSPECIFIED over the API) has no split yet; a cancelled one
    # is no money asked for.
    assert check_order_amounts([order("o1", subtotal=3_200, discount=0, payable=0, status=status)]) == []


def test_the_full_audit_reports_the_mismatch_beside_a_consistent_card():
    card = CardFacts("c1", CID, "alice", "REDEEMED", "SIGNUP", FACE, order_id="o1")
    facts = AuditFacts(
        campaigns=[CampaignFacts(campaign_id=CID, budget_fen=10_000, per_user_card_cap=3)],
        budgets={CID: BudgetFacts(CID, 10_000, FACE, 0, FACE, 10_000 - FACE, 1)},
        cards=[card],
        orders=[order("o1", subtotal=3_200, discount=FACE, payable=200)],
    )
    assert [(f.check, f.ids["order_id"]) for f in audit(facts)] == [("PAYABLE_MISMATCH", "o1")]
