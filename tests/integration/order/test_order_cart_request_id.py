"""AddCartItem's request_id is an idempotency key: the same key with the same line answers the
cart with that line once; the same key with another line (or store) is ALREADY_EXISTS
REQUEST_ID_REUSED, never OK with the new line silently dropped. Over real gRPC with the real
card and catalog servers in-process (conftest.py) and the order store on SQLite."""
from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_service_pb2 as svc
from services.common.errors import error_details

# The seed of conftest.py (importlib mode cannot import conftest as a module).
STORE, OTHER_STORE = "it-store-1", "it-store-2"
LATTE, TEA, CAKE = "it-latte", "it-tea", "it-cake"  # 1500, 800, 3000 fen


def line(item=LATTE, qty=1):
    return catalog_pb2.LineSelection(item_id=item, quantity=qty)


def add(stack, rid, item=LATTE, qty=1, *, user="rita", store=STORE):
    return stack.order.AddCartItem(
        svc.AddCartItemRequest(request_id=rid, user_id=user, store_id=store, line=line(item, qty)),
        metadata=stack.md, timeout=10,
    )


async def rpc_error(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code().name, error_details(info.value)["reason"]


async def cart_lines(stack, user="rita"):
    cart = (await stack.order.GetCart(svc.GetCartRequest(user_id=user), metadata=stack.md)).cart
    return [(ln.selection.item_id, ln.selection.quantity) for ln in cart.lines]


async def test_same_request_id_with_another_line_is_refused_and_the_cart_keeps_the_first(stack):
    first = (await add(stack, "c1", LATTE, 1)).cart
    assert [(ln.selection.item_id, ln.selection.quantity) for ln in first.lines] == [(LATTE, 1)]
    assert await rpc_error(add(stack, "c1", TEA, 3)) == ("ALREADY_EXISTS", "REQUEST_ID_REUSED")
    assert await rpc_error(add(stack, "c1", LATTE, 3)) == ("ALREADY_EXISTS", "REQUEST_ID_REUSED")
    # Another store under the same key is a reused key too, not a cart of another store.
    assert await rpc_error(add(stack, "c1", LATTE, 1, store=OTHER_STORE)) == ("ALREADY_EXISTS", "REQUEST_ID_REUSED")
    assert await cart_lines(stack) == [(LATTE, 1)]


async def test_identical_retries_answer_the_cart_with_the_line_once(stack):
    await add(stack, "c1", LATTE, 1)
    second = (await add(stack, "c2", TEA, 2)).cart
    for _ in range(2):
        again = (await add(stack, "c2", TEA, 2)).cart
        assert again == second
        assert again.total_fen == 1500 + 1600 and again.orderable
    retried_first = (await add(stack, "c1", LATTE, 1)).cart
    assert retried_first == second
    assert await cart_lines(stack) == [(LATTE, 1), (TEA, 2)]
    # The key is per user: another user's c1 is its own request.
    other = (await add(stack, "c1", CAKE, 1, user="sam")).cart
    assert [(ln.selection.item_id, ln.selection.quantity) for ln in other.lines] == [(CAKE, 1)]


async def test_twenty_concurrent_adds_with_one_request_id_and_mixed_lines(stack):
    variants = [(LATTE, 1), (TEA, 3), (CAKE, 2), (LATTE, 2)]
    results = await asyncio.gather(
        *(add(stack, "c1", *variants[i % len(variants)]) for i in range(20)), return_exceptions=True
    )
    answers, reasons = [], Counter()
    for r in results:
        if isinstance(r, grpc.aio.AioRpcError):
            reasons[(r.code().name, error_details(r)["reason"])] += 1
        elif isinstance(r, BaseException):
            raise r
        else:
            answers.append(r.cart)
    assert set(reasons) <= {("ALREADY_EXISTS", "REQUEST_ID_REUSED")}, reasons
    lines = await cart_lines(stack)
    assert len(lines) == 1, lines  # exactly one line for the one request
    assert lines[0] in variants
    # Every success answered the cart holding that one line; every other line was refused.
    assert answers and all(
        [(ln.selection.item_id, ln.selection.quantity) for ln in a.lines] == lines for a in answers
    )
    assert len(answers) == 5 and sum(reasons.values()) == 15
