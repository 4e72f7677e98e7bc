"""ClearCart remembers its request_id per user: a late retry of a clear that was done removes
nothing (a line added after the first attempt survives it) and answers the cart as it is now.
Over real gRPC with the real card and catalog servers in-process (conftest.py), SQLite store."""
from __future__ import annotations

import asyncio

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_service_pb2 as svc

# The seed of conftest.py (importlib mode cannot import conftest as a module).
STORE = "it-store-1"
LATTE, TEA, CAKE = "it-latte", "it-tea", "it-cake"  # 1500, 800, 3000 fen


def add(stack, rid, item, qty=1, user="rita"):
    return stack.order.AddCartItem(
        svc.AddCartItemRequest(request_id=rid, user_id=user, store_id=STORE, line=catalog_pb2.LineSelection(item_id=item, quantity=qty)),
        metadata=stack.md, timeout=10,
    )


def clear(stack, rid="", user="rita"):
    return stack.order.ClearCart(svc.ClearCartRequest(user_id=user, request_id=rid), metadata=stack.md, timeout=10)


def lines_of(cart):
    return [(ln.selection.item_id, ln.selection.quantity) for ln in cart.lines]


async def cart_lines(stack, user="rita"):
    return lines_of((await stack.order.GetCart(svc.GetCartRequest(user_id=user), metadata=stack.md)).cart)


async def test_a_late_retry_of_a_clear_keeps_the_line_added_after_it(stack):
    await add(stack, "a1", LATTE)
    assert lines_of((await clear(stack, "x1")).cart) == []
    await add(stack, "a2", TEA, 2)
    # The first answer was lost; the app retries the same clear after the user added tea.
    again = (await clear(stack, "x1")).cart
    assert lines_of(again) == [(TEA, 2)] and again.total_fen == 1600
    assert await cart_lines(stack) == [(TEA, 2)]
    # A new clear (a new key) empties it, and clears without a key always do.
    assert lines_of((await clear(stack, "x2")).cart) == []
    await add(stack, "a3", CAKE)
    assert lines_of((await clear(stack)).cart) == []
    assert await cart_lines(stack) == []


async def test_request_ids_are_per_user(stack):
    await add(stack, "a1", LATTE, user="rita")
    await add(stack, "b1", TEA, user="sam")
    await clear(stack, "same", user="rita")
    assert lines_of((await clear(stack, "same", user="sam")).cart) == []
    assert await cart_lines(stack, "sam") == []


async def test_concurrent_retries_of_one_clear_and_an_add_leave_the_add(stack):
    """Ten copies of one clear racing an add: the add either lands before the clear (cleared) or
    after it (kept); it is never removed by a copy that came later than the first."""
    for round_ in range(5):
        await add(stack, f"r{round_}-old", LATTE)
        first = await clear(stack, f"x-{round_}")
        assert lines_of(first.cart) == []
        results = await asyncio.gather(add(stack, f"r{round_}-new", TEA), *(clear(stack, f"x-{round_}") for _ in range(10)))
        assert await cart_lines(stack) == [(TEA, 1)]
        assert all(lines_of(r.cart) in ([], [(TEA, 1)]) for r in results[1:])
        await clear(stack)
