"""OrderByText previews kept in memory until confirmed or expired.

A preview is what the catalog understood from a sentence (store + lines). Confirming by
preview_id places exactly those lines without re-parsing; the order service re-quotes the prices,
so a stale preview can never fix a price. Previews are per gateway process and short-lived: losing
them on restart costs the user one re-parse, never money, so they are not worth a store.
"""
from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.clock import Clock, SystemClock

__all__ = ["PreviewRecord", "PreviewStore"]


@dataclass(frozen=True)
class PreviewRecord:
    preview_id: str
    user_id: str
    text: str
    preview: bytes  # the serialized OrderPreview as shown to the user
    store_id: str
    lines: bytes  # serialized LineSelection messages, in order
    expire_time: datetime


class PreviewStore:
    def __init__(self, *, ttl_seconds: float = 600, max_size: int = 100_000, clock: Clock | None = None) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_size = max_size
        self.clock = clock or SystemClock()
        self._items: OrderedDict[str, PreviewRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def new_id(self) -> str:
        # Unguessable: a preview id is a capability for the owner only, and ids never repeat.
        return "pv_" + secrets.token_urlsafe(16)

    def expiry(self) -> datetime:
        return self.clock.now() + self.ttl

    def put(self, record: PreviewRecord) -> None:
        self._evict_expired()
        self._items[record.preview_id] = record
        while len(self._items) > self.max_size:
            # Oldest first: under a flood the previews nobody came back for go first.
            self._items.popitem(last=False)

    def discard(self, preview_id: str) -> None:
        self._items.pop(preview_id, None)

    def get(self, preview_id: str, user_id: str) -> PreviewRecord | None:
        """The preview if it exists, is unexpired and belongs to user_id; None otherwise (the
        caller cannot tell someone else's preview from a missing one)."""
        record = self._items.get(preview_id)
        if record is None:
            return None
        if self.clock.now() >= record.expire_time:
            del self._items[preview_id]
            return None
        if record.user_id != user_id:
            return None
        return record

    def _evict_expired(self) -> None:
        # Insertion order == expiry order (one TTL), so expired entries sit at the front.
        now = self.clock.now()
        while self._items:
            first = next(iter(self._items.values()))
            if now < first.expire_time:
                break
            self._items.popitem(last=False)
