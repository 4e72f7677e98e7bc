"""AddCartItem's request_id outlives its cart line: once the cart was cleared or ordered, a retry
(a network retry that comes late) answers the cart as it is now and puts nothing back; the same
key with another line is still ALREADY_EXISTS REQUEST_ID_REUSED. The key is remembered a week
(model.REQUEST_MEMORY_MS, forgotten by the sweep), and a store written before keys were
remembered opens as it is (no migration) with its lines still answering their retries.
Over real gRPC with the real card and catalog servers in-process (conftest.py) and the order
store on SQLite."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import grpc
import pytest

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2 as S, order_service_pb2 as svc
from services.common.errors import error_details

# The seed of conftest.py (importlib mode cannot import conftest as a module).
CAMPAIGN_ONE, STORE, OTHER_STORE = "it-one", "it-store-1", "it-store-2"
LATTE, TEA, CAKE = "it-latte", "it-tea", "it-cake"  # 1500, 800, 3000 fen
REUSED = ("ALREADY_EXISTS", "REQUEST_ID_REUSED")


def add(stack, rid, item=LATTE, qty=1, *, user="rita", store=STORE):
    return stack.order.AddCartItem(
        svc.AddCartItemRequest(
            request_id=rid, user_id=user, store_id=store, line=catalog_pb2.LineSelection(item_id=item, quantity=qty)
        ),
        metadata=stack.md, timeout=10,
    )


def clear(stack, user="rita"):
    return stack.order.ClearCart(svc.ClearCartRequest(user_id=user), metadata=stack.md, timeout=10)


async def rpc_error(call):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code().name, error_details(info.value)["reason"]


def lines_of(cart):
    return [(ln.selection.item_id, ln.selection.quantity) for ln in cart.lines]


async def cart_lines(stack, user="rita"):
    return lines_of((await stack.order.GetCart(svc.GetCartRequest(user_id=user), metadata=stack.md)).cart)


async def test_a_retry_after_the_cart_was_cleared_puts_nothing_back(stack):
    await add(stack, "c1", LATTE, 1)
    await add(stack, "c2", TEA, 2)
    await clear(stack)
    for _ in range(2):
        assert lines_of((await add(stack, "c1", LATTE, 1)).cart) == []
    assert await rpc_error(add(stack, "c2", CAKE, 1)) == REUSED
    assert await rpc_error(add(stack, "c2", TEA, 2, store=OTHER_STORE)) == REUSED
    assert await cart_lines(stack) == []
    # A fresh key adds, and an old key answers the cart as it is now, without its line.
    assert lines_of((await add(stack, "c3", CAKE, 1)).cart) == [(CAKE, 1)]
    assert lines_of((await add(stack, "c2", TEA, 2)).cart) == [(CAKE, 1)]
    assert await cart_lines(stack) == [(CAKE, 1)]


async def test_a_retry_after_the_cart_was_ordered_puts_nothing_back(stack):
    await add(stack, "c1", LATTE, 1)
    await add(stack, "c2", TEA, 2)
    order = (await stack.order.PlaceOrder(
        svc.PlaceOrderRequest(
            request_id="p1", user_id="rita", from_cart=True, campaign_id=CAMPAIGN_ONE, card_use=S.CARD_USE_NONE
        ),
        metadata=stack.md, timeout=10,
    )).order
    assert order.status == S.ORDER_STATUS_PENDING_PAYMENT and order.subtotal_fen == 1500 + 1600
    assert await cart_lines(stack) == []
    assert lines_of((await add(stack, "c2", TEA, 2)).cart) == []
    assert await rpc_error(add(stack, "c1", LATTE, 3)) == REUSED
    assert await cart_lines(stack) == []


async def test_twenty_concurrent_adds_with_one_request_id_before_and_after_a_clear(stack):
    variants = [(LATTE, 1), (TEA, 3), (CAKE, 2), (LATTE, 2)]

    async def twenty():
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
                answers.append(lines_of(r.cart))
        assert set(reasons) == {REUSED}, reasons
        assert len(answers) == 5 and sum(reasons.values()) == 15
        return answers

    answers = await twenty()
    (won,) = await cart_lines(stack)  # exactly one line, of one content
    assert won in variants and all(a == [won] for a in answers)
    await clear(stack)
    # After the clear the winner's content replays (the cart as it is: empty), any other is
    # refused, and no call puts a line back.
    assert all(a == [] for a in await twenty())
    assert await cart_lines(stack) == []
    assert lines_of((await add(stack, "c1", *won)).cart) == []


async def test_a_key_is_remembered_a_week_after_its_add(stack):
    await add(stack, "c1", LATTE, 1)
    await clear(stack)
    stack.clock.advance(6 * 86_400)
    await stack.service.sweep()
    assert lines_of((await add(stack, "c1", LATTE, 1)).cart) == []
    stack.clock.advance(86_400 + 60)
    await stack.service.sweep()
    # Forgotten: the key is judged as a new request.
    assert lines_of((await add(stack, "c1", TEA, 1)).cart) == [(TEA, 1)]
    # A line that stays in the cart longer than its key is remembered still answers its retry.
    stack.clock.advance(8 * 86_400)
    await stack.service.sweep()
    assert lines_of((await add(stack, "c1", TEA, 1)).cart) == [(TEA, 1)]
    assert await rpc_error(add(stack, "c1", CAKE, 1)) == REUSED
    assert await cart_lines(stack) == [(TEA, 1)]


async def test_a_store_written_before_keys_were_remembered_opens_as_it_is(stack):
    await stack.order_server.stop(0.5)
    # Lines as the previous version wrote them: the line is its request's only record.
    raw = sqlite3.connect(stack.tmp / "order" / "order.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
    with raw:
        raw.executemany(
            "INSERT INTO cart_lines (user_id, position, store_id, request_id, selection) VALUES ('rita', ?, ?, ?, ?)",
            [(0, STORE, "old-1", f'["{LATTE}",1,[]]'), (1, STORE, "old-2", f'["{TEA}",2,[]]')],
        )
    raw.close()
    await stack.start_order()

    # Its lines answer their retries as they did (replay, or REUSED for another line)...
    assert lines_of((await add(stack, "old-1", LATTE, 1)).cart) == [(LATTE, 1), (TEA, 2)]
    assert await rpc_error(add(stack, "old-2", CAKE, 1)) == REUSED
    # ...and a line added from now on is remembered past the clear.
    await add(stack, "new-1", CAKE, 1)
    await clear(stack)
    assert lines_of((await add(stack, "new-1", CAKE, 1)).cart) == []
    assert await rpc_error(add(stack, "new-1", LATTE, 1)) == REUSED
    assert await cart_lines(stack) == []
