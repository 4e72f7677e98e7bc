"""The order ids the store may hold, as a Bloom filter: "certainly no row" without reading SQLite.

Why: every PlaceOrder starts with a point read of its order id (`OrderService._place`), only to
learn whether this (user, request_id) was seen before (a retry). Almost every request is new,
and under write load that read costs 30-60 µs on the event loop, because SQLite drops a
reader's page cache whenever the WAL changed (11-17 µs even when idle). Measured through
`SqliteOrderStore.may_exist` with 200k ids known, on the shared 2-core box: 1.3 µs for a new id
(the common case: the first probe or two miss), 2.1 µs for a known one, 2.3 µs per add. A False
means the read would have found nothing.

Invariant (what makes a False safe): an id is added before its row can be written, and never
removed. The store adds every existing id when it opens and every id it inserts, at the moment
the insert is submitted (services/order/store.py). A row that is deleted, or an insert that
fails, leaves its bits set: a false positive (the caller reads, as before), never a false
negative.

Order ids are `ord_` + 24 hex digits of a sha256 (`model.order_id_for`): already uniformly
random, so the two hashes of double hashing are the two 48-bit halves of those 96 bits, with no
hashing of our own. Any other string (defensive: tests, a hand-written id) is hashed with
blake2b. Every string maps to the same positions each time, which is all that "no false
negatives" needs.
"""
from __future__ import annotations

import hashlib
import math

__all__ = ["KnownOrderIds", "DEFAULT_FP_RATE"]

DEFAULT_FP_RATE = 0.01

_PREFIX = "ord_"
_ID_LEN = len(_PREFIX) + 24
_HALF_MASK = (1 << 48) - 1


def _hashes(order_id: str) -> tuple[int, int]:
    """Two independent 48-bit hashes of the id; the second is odd, so it is never a zero step."""
    if len(order_id) == _ID_LEN and order_id.startswith(_PREFIX):
        try:
            x = int(order_id[4:], 16)
        except ValueError:
            pass
        else:
            # A non-canonical spelling int() still accepts (upper case, "_") maps to the same
            # bits as its canonical twin: at worst a false positive.
            return x >> 48, (x & _HALF_MASK) | 1
    digest = hashlib.blake2b(order_id.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    x = int.from_bytes(digest, "big")
    return x >> 48, (x & _HALF_MASK) | 1


class KnownOrderIds:
    """A Bloom filter of order ids, sized for `capacity` ids at `fp_rate` false positives.

    More ids than `capacity` may be added: the false-positive rate rises (load() > 1 tells the
    owner), answers stay free of false negatives."""

    __slots__ = ("capacity", "fp_rate", "bit_count", "hash_count", "count", "_bits")

    def __init__(self, capacity: int, fp_rate: float = DEFAULT_FP_RATE) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0.0 < fp_rate < 1.0:
            raise ValueError(f"fp_rate must be in (0, 1), got {fp_rate}")
        self.capacity = capacity
        self.fp_rate = fp_rate
        # The textbook optimum: m = -n ln p / (ln 2)^2 bits, k = (m / n) ln 2 probes
        # (1 %: 9.6 bits and 7 probes per id, 1.2 MB per million ids).
        self.bit_count = max(8, math.ceil(-capacity * math.log(fp_rate) / math.log(2) ** 2))
        self.hash_count = max(1, round(self.bit_count / capacity * math.log(2)))
        # Every add, repeats included: counting only adds that set a new bit would stall once
        # the filter saturates (they set none) and hide the overload load() is for; repeats
        # (a retried placement) are rare and only make the owner grow a little early.
        self.count = 0
        self._bits = bytearray((self.bit_count + 7) // 8)

    def add(self, order_id: str) -> None:
        h1, step = _hashes(order_id)
        bits, m = self._bits, self.bit_count
        pos, step = h1 % m, step % m
        for _ in range(self.hash_count):
            bits[pos >> 3] |= 1 << (pos & 7)
            pos += step
            if pos >= m:
                pos -= m
        self.count += 1

    def may_contain(self, order_id: str) -> bool:
        """False: this id was certainly never added. True: it probably was."""
        h1, step = _hashes(order_id)
        bits, m = self._bits, self.bit_count
        pos, step = h1 % m, step % m
        for _ in range(self.hash_count):
            if not bits[pos >> 3] & (1 << (pos & 7)):
                return False
            pos += step
            if pos >= m:
                pos -= m
        return True

    def load(self) -> float:
        """Ids added per id sized for: above 1.0 the false-positive rate exceeds fp_rate."""
        return self.count / self.capacity

    def __repr__(self) -> str:
        return (
            f"KnownOrderIds(count={self.count}, capacity={self.capacity}, fp_rate={self.fp_rate},"
            f" bits={self.bit_count}, hashes={self.hash_count})"
        )
