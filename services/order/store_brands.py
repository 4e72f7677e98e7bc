"""Which brand a store belongs to now, as the catalog says: what a merchant grant naming brands
is judged by at a store where none of the orders names one of its brands (a store without
orders yet, or a rival's).

Before, such a grant was judged by the store's orders alone. A store without orders could not
be placed, so any brand's grant got an empty list and an open stream there, and a rival's store
answered STORE_NOT_YOURS only once it had orders: a grant learnt which stores had taken orders.

An answer is kept a few seconds per store, a bounded number of stores: on launch day no store
has orders, and a chain polling its queues would otherwise ask the catalog at every poll. A
stale answer shows no other brand's orders: what a grant lists and hears is filtered by each
order's own brand; the answer only decides between STORE_NOT_YOURS and the grant's own orders
there (maybe none). Errors (unknown store, catalog down) are not kept.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from services.common.clock import Clock, SystemClock

__all__ = ["StoreBrands", "StoreDirectory"]

KEEP_SECONDS = 10.0
MAX_STORES = 10_000
# Merchant reads carry no deadline of their own into the order service.
ASK_TIMEOUT_SECONDS = 5.0


class StoreDirectory(Protocol):
    async def store_brand(self, store_id: str, *, timeout: float) -> str:
        """The brand the store belongs to now; NotFound STORE_NOT_FOUND, Unavailable."""
        ...


class StoreBrands:
    def __init__(
        self, directory: StoreDirectory, *, clock: Clock | None = None,
        keep_seconds: float = KEEP_SECONDS, max_stores: int = MAX_STORES,
    ) -> None:
        self.directory = directory
        self.clock = clock or SystemClock()
        self.keep_seconds = keep_seconds
        self.max_stores = max_stores
        # store -> (brand, asked, until)
        self._known: OrderedDict[str, tuple[str, float, float]] = OrderedDict()

    async def of(self, store_id: str, *, timeout: float = ASK_TIMEOUT_SECONDS) -> str:
        now = self.clock.now().timestamp()
        known = self._known.get(store_id)
        # Asked "after now": the wall clock stepped back, and the answer's age is unknown (kept
        # otherwise for as long as the step, an hour for an hour's step, not a few seconds).
        if known is not None and known[1] <= now < known[2]:
            self._known.move_to_end(store_id)
            return known[0]
        brand = await self.directory.store_brand(store_id, timeout=timeout)
        self._known[store_id] = (brand, now, now + self.keep_seconds)
        self._known.move_to_end(store_id)
        while len(self._known) > self.max_stores:
            self._known.popitem(last=False)
        return brand
