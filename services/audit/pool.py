"""Run one coroutine per item with a fixed number of workers.

The audit asks some things once per user (a drawn day's entrants). asyncio.gather over a
million users holds a million tasks at once, about 1.5 GB, however few calls the reader lets
through at a time; a fixed pool holds `workers` tasks, whatever the number of items."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable, TypeVar

__all__ = ["map_bounded"]

T = TypeVar("T")
R = TypeVar("R")


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, workers: int) -> list[R]:
    """[await fn(item) for item in items], in the order of items, at most `workers` at a time.
    The first failure cancels the other workers and is raised, as gather would raise it."""
    todo = list(items)
    results: list[R] = [None] * len(todo)  # type: ignore[list-item]
    queue = iter(range(len(todo)))

    async def worker() -> None:
        # One shared iterator: each index is taken by exactly one worker, with no lock, since
        # next() runs between awaits.
        for i in queue:
            results[i] = await fn(todo[i])

    pool = [asyncio.ensure_future(worker()) for _ in range(max(1, min(workers, len(todo))))]
    try:
        await asyncio.gather(*pool)
    except BaseException:
        for task in pool:
            task.cancel()
        await asyncio.gather(*pool, return_exceptions=True)
        raise
    return results
