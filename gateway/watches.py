"""Open order streams (WatchOrder): how many each user, and the whole gateway, may hold at once.

Why: a stream is not a call admission can count (it holds no slot once started), yet it costs
for as long as the client keeps it open: measured with 2,000 streams of one order, the gateway
grew by ~100 MB and the order service by ~60 MB, and the order service re-read the order every
10 s for each. One script opening thousands, or a crowd of phones that never close them, would
run the gateway out of memory. A phone needs one stream per order on screen.
"""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Any, AsyncIterator, Callable, Iterator, TypeVar

from services.common.errors import ResourceExhausted, Unavailable

from .auth import token_expired

__all__ = ["WatchSlots", "TOO_MANY_WATCHES", "WATCH_RETRY_AFTER_MS", "TOKEN_CHECK_S", "while_token_lasts"]

T = TypeVar("T")
TOO_MANY_WATCHES = "TOO_MANY_WATCHES"
WATCH_RETRY_AFTER_MS = 5_000
# How often a quiet stream looks whether its token has expired (the order service ends a merchant
# grant's quiet WatchStoreOrders as often).
TOKEN_CHECK_S = 10.0


class WatchSlots:
    def __init__(self, per_user: int, total: int) -> None:
        if per_user < 1 or total < 1:
            raise ValueError("per_user and total must be >= 1")
        self.per_user = per_user
        self.total = total
        self.open = 0
        self._by_user: dict[str, int] = {}

    @contextmanager
    def held(self, user: str) -> Iterator[None]:
        """One stream of `user` for the duration of the block; refuses before it starts when the
        user (RESOURCE_EXHAUSTED / TOO_MANY_WATCHES) or the gateway (UNAVAILABLE / OVERLOADED)
        has no room."""
        mine = self._by_user.get(user, 0)
        if mine >= self.per_user:
            raise ResourceExhausted(
                TOO_MANY_WATCHES,
                f"最多同时关注 {self.per_user} 个订单 / at most {self.per_user} order streams at once; close one first",
            )
        if self.open >= self.total:
            raise Unavailable(
                "OVERLOADED", "当前关注订单的人数较多，请稍后再试 / too many order streams open, retry later",
                WATCH_RETRY_AFTER_MS,
            )
        self._by_user[user] = mine + 1
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1
            left = self._by_user[user] - 1
            if left:
                self._by_user[user] = left
            else:
                del self._by_user[user]

    def of(self, user: str) -> int:
        return self._by_user.get(user, 0)


async def while_token_lasts(updates: AsyncIterator[T], expired: Callable[[], bool], check_s: float = TOKEN_CHECK_S) -> AsyncIterator[T]:
    """`updates` passed on until the caller's token expires (expired() true, looked at on every
    update and every check_s while none comes), then UNAUTHENTICATED / TOKEN_EXPIRED; `updates`
    is closed however this ends (for WatchOrder: its upstream stream cancelled).
    Why: a stream outlives the token it was opened with (an order nobody moves on is watched for
    days), and every other call stops the moment its token expires. The app reopens the stream
    with a fresh token, and the order service sends the order as it is at once.
    The next update is awaited in a task of its own, never cancelled by a check: cancelling a
    gRPC stream's read cancels the stream."""
    source = updates.__aiter__()
    step: "asyncio.Future[Any] | None" = None
    try:
        while not expired():
            if step is None:
                step = asyncio.ensure_future(source.__anext__())
            done, _ = await asyncio.wait((step,), timeout=check_s)
            if not done:
                continue
            current, step = step, None
            try:
                update = current.result()
            except StopAsyncIteration:
                return
            if expired():
                break
            yield update
        raise token_expired()
    finally:
        await _close(source, step)


async def _close(source: Any, step: "asyncio.Future[Any] | None") -> None:
    """Ends `source`: its pending step cancelled and awaited (cancelled in its own task, the
    source runs its finally there), else closed."""
    if step is not None:
        step.cancel()
        await asyncio.gather(step, return_exceptions=True)
    elif hasattr(source, "aclose"):
        await source.aclose()
