"""The catalog's change feed: a version bumped by every committed change that can alter a Quote,
fanned out to WatchMenuChanges subscribers (the order service keeps Quote answers until the
feed says the store changed).

Publishing is synchronous and never waits for a subscriber, so a write is never slowed by a
slow reader: each subscription has a bounded backlog, and one that overflows is ended (its
reader sees the stream close, drops what it kept and reconnects). No grpc here.
"""
from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Iterable

__all__ = ["Change", "MenuChanges", "Subscription", "SubscriptionEnded", "LAGGING", "SHUTTING_DOWN"]

# Pending changes a subscriber may have before it is cut off (a healthy reader drains the
# backlog every event-loop turn; a full one means it has stopped reading).
DEFAULT_BACKLOG = 1_000
# A batch naming more stores than this is sent as all_stores: cheaper for both ends than a
# huge id list, and the reader drops everything either way.
MAX_BATCH_STORES = 1_000

LAGGING = "LAGGING"
SHUTTING_DOWN = "SHUTTING_DOWN"


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    store_ids: tuple[str, ...] = ()
    all_stores: bool = False


class SubscriptionEnded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """One reader's view of the feed: `start_version` when it subscribed, then every change after."""

    def __init__(self, feed: "MenuChanges", backlog: int) -> None:
        self._feed = feed
        self._backlog = backlog
        self._pending: deque[Change] = deque()
        self._wake = asyncio.Event()
        self.epoch = feed.epoch
        self.start_version = feed.version
        self.last_version = feed.version
        self.ended: str = ""

    def offer(self, change: Change) -> None:
        if self.ended:
            return
        if len(self._pending) >= self._backlog:
            self.end(LAGGING)
            return
        self._pending.append(change)
        self._wake.set()

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = reason
            self._pending.clear()
            self._wake.set()
            self._feed._subscribers.discard(self)

    async def next(self, idle_seconds: float) -> Change | None:
        """Everything pending merged into one change, or None after idle_seconds without any
        (the caller sends a heartbeat). Raises SubscriptionEnded once ended."""
        if not self._pending and not self.ended:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), idle_seconds)
            except asyncio.TimeoutError:
                return None
        if self.ended:
            raise SubscriptionEnded(self.ended)
        pending, self._pending = self._pending, deque()
        version = pending[-1].version
        self.last_version = version
        if any(c.all_stores for c in pending):
            return Change(version, (), True)
        stores: dict[str, None] = {}
        for c in pending:
            stores.update(dict.fromkeys(c.store_ids))
        if len(stores) > MAX_BATCH_STORES:
            return Change(version, (), True)
        return Change(version, tuple(stores), False)

    def close(self) -> None:
        """The reader went away."""
        self._feed._subscribers.discard(self)
        self.ended = self.ended or "CLOSED"


class MenuChanges:
    def __init__(self, *, epoch: str | None = None, backlog: int = DEFAULT_BACKLOG) -> None:
        # New on every start: versions are in-memory, so a restarted catalog must not be
        # mistaken for the one whose versions a reader remembers.
        self.epoch = epoch or secrets.token_hex(8)
        self.version = 0
        self.backlog = backlog
        self._subscribers: set[Subscription] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.backlog)
        self._subscribers.add(sub)
        return sub

    def publish(self, store_ids: Iterable[str] = (), *, all_stores: bool = False) -> int:
        """Call AFTER the change is committed and applied to memory (a Quote computed in
        between carries the old version and is therefore discarded by readers)."""
        self.version += 1
        change = Change(self.version, () if all_stores else tuple(store_ids), all_stores)
        for sub in tuple(self._subscribers):
            sub.offer(change)
        return self.version

    def close(self) -> None:
        for sub in tuple(self._subscribers):
            sub.end(SHUTTING_DOWN)
