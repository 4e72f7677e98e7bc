"""A ListStoreOrders call reads a window of the store's orders, not its whole history: a status
few of them are in (CANCELLED) answers a short page, even an empty one, with a token to go on
from, and paging on finds every such order. Before, each call read the store's history down to
its oldest order (31 ms at 60,000 orders, on one of the service's two reader threads), which a
merchant's terminal polling for cancellations did on every poll."""
from __future__ import annotations

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.auth import MERCHANT_TOKEN_KEY
from services.common.merchant_grant import mint_grant
from services.order.store import STORE_READ_WINDOW

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN, STORE, LATTE = "it-one", "it-store-1", "it-latte"


async def test_cancelled_orders_behind_a_long_history_are_found_page_by_page(stack):
    await stack.signup("old")
    placed = await stack.order.PlaceOrder(svc.PlaceOrderRequest(
        request_id="old-1", user_id="old", store_id=STORE, campaign_id=CAMPAIGN,
        lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)], card_use=S.CARD_USE_BEST,
    ), metadata=stack.md, timeout=5)
    md = ((MERCHANT_TOKEN_KEY, mint_grant(stack.settings.merchant_signing_key, "m-pages", stores=[STORE], clock=stack.clock)),)
    cancelled = await stack.order.CancelOrder(svc.CancelOrderRequest(request_id="c", order_id=placed.order.order_id), metadata=md)
    assert cancelled.order.status == S.ORDER_STATUS_CANCELLED

    def history(conn):
        # Completed orders after it, more than one window of them (their documents are never read).
        doc, create_ms = conn.execute("SELECT doc, create_ms FROM orders WHERE order_id = ?", (placed.order.order_id,)).fetchone()
        conn.executemany(
            "INSERT INTO orders (order_id, user_id, request_id, status, create_ms, update_ms, doc, version, store_id)"
            " VALUES (?, ?, ?, 'COMPLETED', ?, ?, ?, 2, ?)",
            [(f"ord_filler_{n:06d}", f"filler-{n}", "r", create_ms + 1 + n, create_ms + 1 + n, doc, STORE)
             for n in range(STORE_READ_WINDOW + 500)],
        )

    await stack.service.store.db.write(history)
    request = svc.ListStoreOrdersRequest(store_id=STORE, status=S.ORDER_STATUS_CANCELLED)
    first = await stack.order.ListStoreOrders(request, metadata=md)
    assert not first.orders and first.next_page_token  # a window of completed orders: nothing yet
    found, token, pages = [], first.next_page_token, 1
    while token:
        request.page_token = token
        page = await stack.order.ListStoreOrders(request, metadata=md)
        found += [o.order_id for o in page.orders]
        token, pages = page.next_page_token, pages + 1
    assert found == [placed.order.order_id] and pages <= 3
