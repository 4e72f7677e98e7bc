"""The capacity bench's RPC floor: what the scenario's server RPCs alone would allow."""
from __future__ import annotations

from collections import Counter

from bench.capacity import rpc_floor_text


def test_the_floor_counts_every_server_rpc_per_order_against_the_relay_hop():
    served = Counter(gateway=200, order=150, card=100, catalog=50)  # 5 server RPCs per order
    text = rpc_floor_text(served, orders=100, empty_rate=2000.0, relay_rate=1000.0)
    assert "gateway 2.00, order 1.50, card 1.00, catalog 0.50 = 5.00" in text
    assert "2.00 empty calls each" in text
    # A relayed call is two server RPCs: 1000 relays/s = 2000 RPCs/s = 400 orders of 5 RPCs.
    assert "about 400 orders/s, ratio 0.200" in text


def test_no_floor_without_orders_or_a_measured_relay():
    assert rpc_floor_text(Counter(gateway=10), orders=0, empty_rate=2000.0, relay_rate=1000.0) == ""
    assert rpc_floor_text(Counter(gateway=10), orders=5, empty_rate=2000.0, relay_rate=0.0) == ""
