"""The order service's Quote cache bounds what its answers hold, not only how many it keeps: a
buyer may send 50 lines of 20 made-up options each, and the catalog's answer (a problem per
option) was kept like any other, ~1.4 MB each, so 20,000 of them (the count bound) were 28 GB.
Over real gRPC with the real card and catalog servers in-process (conftest.py)."""
from __future__ import annotations

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.order import quote_cache

CAMPAIGN_ONE, STORE, LATTE = "it-one", "it-store-1", "it-latte"
HEAVY_ORDERS = 12


def held(cache) -> int:
    """Selections, options, priced lines and problems the kept answers hold."""
    units = 0
    for (_, lines), entry in cache._entries.items():
        units += len(lines) + sum(len(options) for _, _, options in lines)
        units += len(entry.quote.lines) + sum(len(line.options) for line in entry.quote.lines) + len(entry.quote.problems)
    return units


def order(n, lines):
    return svc.PlaceOrderRequest(
        request_id=f"r{n}", user_id="heavy", store_id=STORE, campaign_id=CAMPAIGN_ONE, lines=lines, card_use=S.CARD_USE_NONE
    )


def heavy_lines(n):
    """The largest order a buyer may send: 50 lines of 20 options none of which exists."""
    return [
        catalog_pb2.LineSelection(
            item_id=LATTE, quantity=1 + (n + i) % 99,
            options=[catalog_pb2.OptionChoice(group_id=f"g{j}", option_id=f"o{j}") for j in range(20)],
        )
        for i in range(50)
    ]


async def test_heavy_answers_do_not_fill_the_quote_cache(stack):
    cache = stack.service.catalog
    assert isinstance(cache, quote_cache.QuoteCache) and await cache.wait_live(5)
    for n in range(HEAVY_ORDERS):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.order.PlaceOrder(order(n, heavy_lines(n)), metadata=stack.md, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Whatever is kept of them is bounded per answer, whatever their number (old: ~6,000 each).
    assert held(cache) <= HEAVY_ORDERS * quote_cache.MAX_ENTRY_WEIGHT
    # An ordinary order's answer is still kept and served again.
    latte = [catalog_pb2.LineSelection(item_id=LATTE, quantity=1)]
    for n in (100, 101):
        placed = await stack.order.PlaceOrder(order(n, latte), metadata=stack.md, timeout=10)
        assert placed.order.status == S.ORDER_STATUS_PENDING_PAYMENT
    assert cache.hits >= 1
