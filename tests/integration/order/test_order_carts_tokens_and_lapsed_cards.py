"""Full carts, page tokens of other listings, doubled option groups and lapsed cards of ready orders (real gRPC, conftest.py)."""
from __future__ import annotations

import asyncio

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc
from services.common.errors import error_details

STORE = "it-store-1"  # the seed of conftest.py
LATTE, TEA = "it-latte", "it-tea"


async def test_a_full_cart_refuses_one_more_line_as_cart_full(stack):
    for i in range(50):
        await stack.order.AddCartItem(
            svc.AddCartItemRequest(
                request_id=f"add-{i}", user_id="fiona", store_id=STORE,
                line=catalog_pb2.LineSelection(item_id=TEA if i % 2 else LATTE, quantity=1),
            ),
            metadata=stack.md, timeout=10,
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.order.AddCartItem(
            svc.AddCartItemRequest(
                request_id="add-50", user_id="fiona", store_id=STORE,
                line=catalog_pb2.LineSelection(item_id=LATTE, quantity=1),
            ),
            metadata=stack.md, timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, error_details(info.value)
    assert error_details(info.value)["reason"] == "CART_FULL"
    cart = (await stack.order.GetCart(svc.GetCartRequest(user_id="fiona"), metadata=stack.md, timeout=10)).cart
    assert len(cart.lines) == 50 and cart.orderable
    # A retry of the add that filled it is still answered with the cart, not CART_FULL.
    replay = await stack.order.AddCartItem(
        svc.AddCartItemRequest(
            request_id="add-49", user_id="fiona", store_id=STORE, line=catalog_pb2.LineSelection(item_id=TEA, quantity=1),
        ),
        metadata=stack.md, timeout=10,
    )
    assert len(replay.cart.lines) == 50


async def _place_plain(stack, user: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        resp = await stack.order.PlaceOrder(
            svc.PlaceOrderRequest(
                request_id=f"{user}-{i}", user_id=user, store_id=STORE, card_use=order_pb2.CARD_USE_NONE,
                lines=[catalog_pb2.LineSelection(item_id=TEA, quantity=1)],
            ),
            metadata=stack.md, timeout=10,
        )
        ids.append(resp.order.order_id)
    return ids


async def _refused_token(call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error_details(info.value)
    return error_details(info.value)["reason"]


async def test_a_page_token_of_one_listing_is_refused_by_the_others(stack):
    # ListOrders and ListStoreOrders both page by (create time, order id): a buyer's token read
    # as a position in a store's queue started it mid-way (conventions: a token names its listing).
    await _place_plain(stack, "tom", 3)
    mine = await stack.order.ListOrders(svc.ListOrdersRequest(user_id="tom", page_size=1), metadata=stack.md)
    queue = await stack.order.ListStoreOrders(
        svc.ListStoreOrdersRequest(store_id=STORE, page_size=1), metadata=stack.merchant_md
    )
    every = await stack.order.ListAllOrders(svc.ListAllOrdersRequest(page_size=1), metadata=stack.admin_md)
    assert mine.next_page_token and queue.next_page_token and every.next_page_token
    assert await _refused_token(stack.order.ListStoreOrders(
        svc.ListStoreOrdersRequest(store_id=STORE, page_token=mine.next_page_token), metadata=stack.merchant_md
    )) == "INVALID_PAGE_TOKEN"
    assert await _refused_token(stack.order.ListOrders(
        svc.ListOrdersRequest(user_id="tom", page_token=queue.next_page_token), metadata=stack.md
    )) == "INVALID_PAGE_TOKEN"
    for token in (mine.next_page_token, queue.next_page_token):
        assert await _refused_token(stack.order.ListAllOrders(
            svc.ListAllOrdersRequest(page_token=token), metadata=stack.admin_md
        )) == "INVALID_PAGE_TOKEN"
    # Each still pages its own listing to the end.
    for listing, first, follow in (
        ("mine", mine, lambda t: stack.order.ListOrders(svc.ListOrdersRequest(user_id="tom", page_size=1, page_token=t), metadata=stack.md)),
        ("queue", queue, lambda t: stack.order.ListStoreOrders(
            svc.ListStoreOrdersRequest(store_id=STORE, page_size=1, page_token=t), metadata=stack.merchant_md)),
        ("every", every, lambda t: stack.order.ListAllOrders(svc.ListAllOrdersRequest(page_size=1, page_token=t), metadata=stack.admin_md)),
    ):
        seen, page = [o.order_id for o in first.orders], first
        while page.next_page_token:
            page = await follow(page.next_page_token)
            seen += [o.order_id for o in page.orders]
        assert len(seen) == len(set(seen)) == 3, listing


@pytest.mark.parametrize("token", ["!!!", "*", "====", "Zm9v!"])
async def test_a_page_token_of_characters_outside_base64_is_refused_not_read_as_the_first_page(stack, token):
    await _place_plain(stack, "ann", 2)
    assert await _refused_token(stack.order.ListAllOrders(
        svc.ListAllOrdersRequest(page_token=token), metadata=stack.admin_md
    )) == "INVALID_PAGE_TOKEN"


async def test_page_tokens_handed_out_before_they_named_their_listing_still_page_on(stack):
    import base64

    ids = await _place_plain(stack, "old", 3)
    mine = await stack.order.ListOrders(svc.ListOrdersRequest(user_id="old", page_size=3), metadata=stack.md)
    first = mine.orders[0]
    untagged = base64.urlsafe_b64encode(
        f"{first.create_time.ToMilliseconds()}|{first.order_id}".encode()
    ).decode()
    rest = await stack.order.ListOrders(svc.ListOrdersRequest(user_id="old", page_token=untagged), metadata=stack.md)
    assert [o.order_id for o in rest.orders] == [o.order_id for o in mine.orders[1:]]
    queue = await stack.order.ListStoreOrders(
        svc.ListStoreOrdersRequest(store_id=STORE, page_token=untagged), metadata=stack.merchant_md
    )
    assert [o.order_id for o in queue.orders] == [o.order_id for o in mine.orders[1:]]
    after_first = base64.urlsafe_b64encode(sorted(ids)[0].encode()).decode()
    every = await stack.order.ListAllOrders(svc.ListAllOrdersRequest(page_token=after_first), metadata=stack.admin_md)
    assert [o.order_id for o in every.orders] == sorted(ids)[1:]


async def test_a_group_chosen_twice_is_named_on_the_line_field_of_add_cart_item(stack):
    # The catalog refuses it naming `lines[<index in the cart>].options`: no field of
    # AddCartItemRequest, and with lines in the cart not even index 0.
    await stack.order.AddCartItem(
        svc.AddCartItemRequest(
            request_id="first", user_id="gus", store_id=STORE, line=catalog_pb2.LineSelection(item_id=TEA, quantity=1)
        ),
        metadata=stack.md, timeout=10,
    )
    twice = [catalog_pb2.OptionChoice(group_id="size", option_id=o) for o in ("medium", "large")]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stack.order.AddCartItem(
            svc.AddCartItemRequest(
                request_id="second", user_id="gus", store_id=STORE,
                line=catalog_pb2.LineSelection(item_id=LATTE, quantity=1, options=twice),
            ),
            metadata=stack.md, timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(info.value)
    assert [field for field, _ in details["violations"]] == ["line.options"], details
    with pytest.raises(grpc.aio.AioRpcError) as placed:
        await stack.order.PlaceOrder(
            svc.PlaceOrderRequest(
                request_id="twice", user_id="gus", store_id=STORE,
                lines=[catalog_pb2.LineSelection(item_id=TEA, quantity=1),
                       catalog_pb2.LineSelection(item_id=LATTE, quantity=1, options=twice)],
            ),
            metadata=stack.md, timeout=10,
        )
    assert placed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in error_details(placed.value)["violations"]] == ["lines[1].options"]


# --- a card hold that lapsed under an order the merchant already finished ---------------------

CAKE, CAMPAIGN_ONE = "it-cake", "it-one"  # 3000 fen: above the 2,500 card, paid partly by money


async def _sweep_until_settled(stack, attempts=40):
    for _ in range(attempts):
        report = await stack.service.sweep()
        if not report.failed:
            return report
        await asyncio.sleep(0.25)
    raise AssertionError(f"sweep never settled: {report}")


def _place(rid, user, item=LATTE):
    return svc.PlaceOrderRequest(
        request_id=rid, user_id=user, store_id=STORE, campaign_id=CAMPAIGN_ONE,
        lines=[catalog_pb2.LineSelection(item_id=item, quantity=1)],
    )


@pytest.mark.parametrize("steps", [
    ("ACCEPTED", "PREPARING", "READY"),
    ("ACCEPTED", "PREPARING", "READY", "COMPLETED"),
])
async def test_a_lapsed_card_never_moves_an_order_the_merchant_made_ready_back_to_cancelled(stack, steps):
    # Paid in its window while the card service was unreachable, so the card's confirmation
    # waits for the sweep; the hold lapses meanwhile and the card, back with its owner, pays
    # for another order. The merchant had already made the first one ready (or handed it over):
    # READY and COMPLETED are past every cancellation (proto: CANCELLED from PENDING_PAYMENT,
    # PAID, ACCEPTED or PREPARING; COMPLETED is final), so the sweep must not cancel it.
    user = f"ivy-{len(steps)}"
    (card_id,) = await stack.signup(user)
    o = (await stack.order.PlaceOrder(_place(f"{user}-1", user, CAKE), metadata=stack.md)).order
    assert o.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT and o.card_id == card_id
    stack.proxy.cut()
    paid = (await stack.order.ConfirmPayment(
        svc.ConfirmPaymentRequest(order_id=o.order_id, user_id=user, payment_reference=o.payment.payment_reference),
        metadata=stack.md,
    )).order
    assert paid.status == order_pb2.ORDER_STATUS_PAID
    await stack.service.drain()
    for step in steps:
        await stack.order.UpdateOrderStatus(
            svc.UpdateOrderStatusRequest(order_id=o.order_id, status=order_pb2.OrderStatus.Value(f"ORDER_STATUS_{step}")),
            metadata=stack.merchant_md,
        )
    stack.clock.advance(15 * 60 + 60 + 1)
    stack.proxy.down = False
    for _ in range(40):
        try:
            other = (await stack.order.PlaceOrder(_place(f"{user}-2", user), metadata=stack.md, timeout=5)).order
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.25)  # the channel to the card service reconnecting
    assert other.card_id == card_id
    await _sweep_until_settled(stack)
    got = (await stack.order.GetOrder(svc.GetOrderRequest(order_id=o.order_id, user_id=user), metadata=stack.md)).order
    history = [order_pb2.OrderStatus.Name(h.status) for h in got.history]
    assert order_pb2.OrderStatus.Name(got.status) == f"ORDER_STATUS_{steps[-1]}", history
    assert "ORDER_STATUS_CANCELLED" not in history
    assert got.payment.status == order_pb2.PAYMENT_STATUS_CAPTURED  # the merchant keeps what was paid
