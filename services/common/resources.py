"""What a service opened, closed by the kit: last opened first, each once, whatever fails.

A wiring registers each thing the moment it opens it (a store, an upstream client, a background
task); the kit (services.common.server) closes them all should the build or the start fail, and
after the drain of a normal stop. So no wiring needs a clean-up path of its own, and none can
forget one: an open store's connection threads would keep a process that will never serve alive.

Last opened first because later things use earlier ones: a sweeper writes to the store, a
scheduler calls an upstream client. A close that fails is logged and the others still run, so
one broken client cannot leave the store open; the first failure is then raised, so a stop that
did not release everything does not look clean.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Callable, Coroutine, TypeVar

__all__ = ["Resources"]

T = TypeVar("T")


class Resources:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("miandan")
        self._closers: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._closing: asyncio.Future[BaseException | None] | None = None

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def closing(self, thing: T, *, name: str | None = None) -> T:
        """Register `thing`, which has a close() (async or not); returns it."""
        self.on_close(thing.close, name=name or type(thing).__name__)  # type: ignore[attr-defined]
        return thing

    def on_close(self, close: Callable[..., Any], *args: Any, name: str | None = None) -> None:
        """Register `close(*args)` (async or not), e.g. a scheduler's stop or a metric's unregister."""
        if self._closing is not None:
            # Whatever it is would be left open: the kit has already released everything.
            raise RuntimeError(f"resources already closed; cannot take {name or _name_of(close)}")
        self._closers.append((name or _name_of(close), close, args))

    def task(self, work: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start `work` in the background; closing cancels it and waits for it to end."""
        if self._closing is not None:
            work.close()  # never started: no "coroutine was never awaited" warning
            raise RuntimeError(f"resources already closed; cannot start {name}")
        task = asyncio.get_running_loop().create_task(work, name=name)
        self.on_close(_cancel_and_wait, task, name=name)
        return task

    async def close(self) -> None:
        """Close everything registered, last first. Later calls wait for the first and raise nothing."""
        if self._closing is not None:
            await asyncio.wait({self._closing})
            return
        self._closing = asyncio.ensure_future(self._close_all())
        # Shielded: a stop that is itself cancelled must not leave half of the closes undone.
        failure = await asyncio.shield(self._closing)
        if failure is not None:
            raise failure

    async def _close_all(self) -> BaseException | None:
        first: BaseException | None = None
        while self._closers:
            name, close, args = self._closers.pop()
            try:
                result = close(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - the rest must still close
                self.logger.exception("closing failed", extra={"resource": name})
                first = first or exc
        return first


def _name_of(close: Callable[..., Any]) -> str:
    return getattr(close, "__qualname__", None) or repr(close)


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    # asyncio.wait, not `await task`: a cancellation of the closer itself must not be taken for
    # the task's own and swallowed.
    await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]  # it died before the stop: say so
