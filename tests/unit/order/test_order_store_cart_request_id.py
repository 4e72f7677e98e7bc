"""The cart's request_id check inside the store's write (what a concurrent add meets after the
handler's early read found nothing): the key is remembered with the line it added."""
from __future__ import annotations

import asyncio

import pytest

from services.common.errors import DomainError
from services.order.model import Selection, cart_request_key
from services.order.store import SqliteOrderStore


def add(store, user_id, store_id, selection, request_id):
    return store.add_cart_line(cart_request_key(request_id, user_id, 0, store_id, selection), store_id, selection)


async def reason(coro) -> str:
    with pytest.raises(DomainError) as err:
        await coro
    return err.value.reason


async def test_the_store_refuses_a_request_id_that_added_another_line(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        latte = Selection("latte", 1, (("size", "L"),))
        await add(store, "u1", "s1", latte, "a1")
        # Identical retries write nothing more.
        await add(store, "u1", "s1", Selection("latte", 1, (("size", "L"),)), "a1")
        for other in (
            ("s1", Selection("tea", 3)),
            ("s1", Selection("latte", 3, (("size", "L"),))),
            ("s1", Selection("latte", 1, (("size", "M"),))),
            ("s1", Selection("latte", 1)),
            ("s2", latte),
        ):
            assert await reason(add(store, "u1", *other, "a1")) == "REQUEST_ID_REUSED"
        assert await store.cart("u1") == ("s1", [latte])
        assert await store.cart_line("u1", "a1") == ("s1", latte)
        assert await store.cart_line("u1", "nope") is None
        assert await store.cart_line("u2", "a1") is None
    finally:
        await store.close()


async def test_concurrent_adds_under_one_request_id_leave_one_line(tmp_path):
    store = await SqliteOrderStore.open(tmp_path / "o.db")
    try:
        lines = [Selection("latte", 1), Selection("tea", 3), Selection("cake", 2), Selection("latte", 2)]
        results = await asyncio.gather(
            *(add(store, "u1", "s1", lines[i % 4], "a1") for i in range(20)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, DomainError) and e.reason == "REQUEST_ID_REUSED" for e in errors), errors
        store_id, cart = await store.cart("u1")
        assert store_id == "s1" and len(cart) == 1
        assert len(errors) == 15  # the five adds of the winning line succeeded, as retries
    finally:
        await store.close()
