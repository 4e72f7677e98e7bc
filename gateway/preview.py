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


# A person on a phone has a few previews on screen at a time (and a confirm from text keeps two
# records: its replay key and the preview). Why a bound per user and not only the store's: one
# account scripting OrderByText within its pace (5 a second) held ~3,000 previews per TTL, and a
# few such accounts pushed every other user's preview out before it was confirmed.
PREVIEWS_PER_USER = 32


class PreviewStore:
    def __init__(
        self, *, ttl_seconds: float = 600, max_size: int = 100_000, per_user: int = PREVIEWS_PER_USER,
        clock: Clock | None = None,
    ) -> None:
        if per_user < 1 or max_size < 1:
            raise ValueError("per_user and max_size must be >= 1")
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_size = max_size
        self.per_user = per_user
        self.clock = clock or SystemClock()
        self._items: OrderedDict[str, PreviewRecord] = OrderedDict()
        # user -> that user's preview ids, oldest first: whom a new preview pushes out.
        self._by_user: dict[str, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def new_id(self) -> str:
        # Unguessable: a preview id is a capability for the owner only, and ids never repeat.
        return "pv_" + secrets.token_urlsafe(16)

    def expiry(self) -> datetime:
        return self.clock.now() + self.ttl

    def held_by(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def put(self, record: PreviewRecord) -> None:
        self._evict_expired()
        old = self._items.get(record.preview_id)
        if old is not None and old.user_id != record.user_id:
            self._drop(record.preview_id)
        self._items[record.preview_id] = record
        mine = self._by_user.setdefault(record.user_id, OrderedDict())
        mine[record.preview_id] = None
        mine.move_to_end(record.preview_id)
        while len(mine) > self.per_user:
            # The user's own oldest: a flood from one account costs that account only.
            self._drop(next(iter(mine)))
        while len(self._items) > self.max_size:
            # Oldest first: under a flood the previews nobody came back for go first.
            self._drop(next(iter(self._items)))

    def discard(self, preview_id: str) -> None:
        self._drop(preview_id)

    def _drop(self, preview_id: str) -> None:
        record = self._items.pop(preview_id, None)
        if record is None:
            return
        mine = self._by_user.get(record.user_id)
        if mine is not None:
            mine.pop(preview_id, None)
            if not mine:
                del self._by_user[record.user_id]

    def get(self, preview_id: str, user_id: str) -> PreviewRecord | None:
        """The preview if it exists, is unexpired and belongs to user_id; None otherwise (the
        caller cannot tell someone else's preview from a missing one)."""
        record = self._items.get(preview_id)
        if record is None:
            return None
        if self.clock.now() >= record.expire_time:
            self._drop(preview_id)
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
            self._drop(first.preview_id)
