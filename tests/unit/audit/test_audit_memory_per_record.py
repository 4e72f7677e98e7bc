"""The audit holds every card and order of the campaigns it checks (ListCampaignCards and
ListAllOrders, then the cross checks): at national scale that is tens of millions of records, so
what one record costs decides whether the audit fits the operator's machine. The few values
every record repeats (campaign id, state, source, status, payment note) are shared, not copied
per record, and a record has no __dict__: what is left is its own ids and amounts (it was 565
bytes a card, 580 an order)."""
from __future__ import annotations

import gc
import tracemalloc

from miandan.card.v1 import card_pb2, card_service_pb2 as cs
from miandan.order.v1 import order_pb2, order_service_pb2 as os_
from services.audit.fetch import card_facts, order_facts

N = 20_000


def _bytes_per_record(make) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        held = make()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(held) == N
    return (after - before) / N


def test_a_listed_card_costs_the_audit_under_450_bytes():
    page = cs.ListCampaignCardsResponse(cards=[
        card_pb2.Card(card_id=f"cd{i:016x}", campaign_id="spring-2026", user_id=f"user-{i:08d}", state=card_pb2.CARD_STATE_REDEEMED,
                      source=card_pb2.CARD_SOURCE_INVITER, face_value_fen=2_500, order_id=f"ord_{i:024x}")
        for i in range(N)
    ]).SerializeToString()
    per_card = _bytes_per_record(lambda: [card_facts(c) for c in cs.ListCampaignCardsResponse.FromString(page).cards])
    assert per_card < 450, per_card


def test_a_listed_order_costs_the_audit_under_450_bytes():
    page = os_.ListAllOrdersResponse(orders=[
        order_pb2.Order(order_id=f"ord_{i:024x}", user_id=f"user-{i:08d}", status=order_pb2.ORDER_STATUS_COMPLETED,
                        card_id=f"cd{i:016x}", campaign_id="spring-2026", card_discount_fen=2_500, subtotal_fen=3_000, payable_fen=500)
        for i in range(N)
    ]).SerializeToString()
    per_order = _bytes_per_record(lambda: [order_facts(o) for o in os_.ListAllOrdersResponse.FromString(page).orders])
    assert per_order < 450, per_order
