"""In-memory grid index of store locations for nearest-first search.

Why a grid and not SQLite R*Tree: 300,000 points of two floats fit in a few tens of MB, and a
nearest-k query must finish in well under 10 ms including the open-now and brand filters, which
an SQL round trip per query (thread hop + R*Tree + join) would eat most of. Cells are
CELL_DEG degrees square (~550 m north-south). A query walks rings of cells outward from the
query cell and stops once the nearest unvisited ring is farther than the k-th hit found so far,
so its cost depends on local density, not on the total number of stores.

Distances are great-circle (haversine) metres. Most candidates are dismissed first by a flat
(equirectangular) estimate, which is within a few percent of the true distance at city scale,
so the trigonometry runs only for stores that may make the result.

Columns of cells wrap at the antimeridian: a store at 179.99°E is two kilometres from a user at
179.99°W (Fiji, Chukotka), and a walk of columns that stopped at ±180° never reached it.
"""
from __future__ import annotations

import heapq
import math
from typing import Callable, Iterator

from .model import EARTH_RADIUS_M, Hours, OpenClock, StoreRecord, haversine_m

CELL_DEG = 0.005
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0  # ~111.2 km
_J_BITS = 20  # cell key = (i << 20) + j; |j| <= 36,000 < 2**19, so keys are unique
# Columns around the globe; j is kept in -_HALF_COLUMNS.._HALF_COLUMNS - 1, so 180°E and 180°W,
# one meridian, are one column.
_COLUMNS = round(360 / CELL_DEG)
_HALF_COLUMNS = _COLUMNS // 2
# The flat estimate uses the query's latitude for every candidate; within this slack it never
# dismisses a store whose true distance is inside the bound (checked up to 50 km below 60°N).
_FLAT_SLACK = 1.05
_FLAT_MAX_LAT = 60.0
# A search box that reaches this latitude is searched across every column of its rows: nearer
# the pole a column is under a metre wide, and a circle round the pole spans every meridian.
_POLAR_LAT = 89.9
# A brand with more timetables than this is searched for open stores in its whole index: one
# search per open timetable would then cost more than the closed stores it skips.
MAX_TIMETABLES = 16
# A brand that went over MAX_TIMETABLES is split again once it is down to this many: well below,
# so that a brand hovering around the limit is not split and dropped at every import.
SPLIT_AGAIN_TIMETABLES = 8
# A brand not split counts its timetables again after moves and removals of one store in this
# many (nothing else brings the count down): the count may read every store, and splitting again
# indexes them all at once (~0.2 s for 100,000), so either costs a few store reads a change.
RECOUNT_EVERY_SHARE = 8


# Among stores at the same distance the answer keeps the smaller store ids, the ones it lists
# first: pages are cut from answers of growing length (offset + size + 1), and a longer answer
# must begin with the shorter one, or stores at one spot (a mall) are shown twice on the next
# page and some never. The heap's top is the entry to drop, so its ids compare the other way:
# each UTF-8 byte b becomes 254 - b (UTF-8 has no 0xFF byte) and 0xFF ends the key, so that a
# longer id that starts with a shorter one sorts first, as it must when reversed.
_REVERSE_BYTES = bytes(254 - b if b < 255 else 0 for b in range(256))


def _dropped_first(store_id: str) -> bytes:
    """A key that orders ids in reverse (the greater id is dropped first among equal distances)."""
    return store_id.encode("utf-8", "surrogatepass").translate(_REVERSE_BYTES) + b"\xff"


def _column(j: int) -> int:
    """Column j wrapped into -_HALF_COLUMNS.._HALF_COLUMNS - 1."""
    return (j + _HALF_COLUMNS) % _COLUMNS - _HALF_COLUMNS


def cell_key(lat: float, lng: float) -> int:
    j = math.floor(lng / CELL_DEG)
    if j >= _HALF_COLUMNS:  # 180°E itself: the column of 180°W
        j -= _COLUMNS
    return (math.floor(lat / CELL_DEG) << _J_BITS) + j


def _lng_reach_deg(lat: float, radius_m: float) -> float:
    """How far east or west of the query, in degrees, a store within radius_m may be (at least
    a whole column, at most the globe)."""
    max_lat = min(89.9, abs(lat) + radius_m / _M_PER_DEG)
    return min(360.0, radius_m / max(1.0, _M_PER_DEG * math.cos(math.radians(max_lat))) + CELL_DEG)


class GeoIndex:
    def __init__(self) -> None:
        # int keys rather than (i, j) tuples: ~60,000 cells, the difference is megabytes.
        self._cells: dict[int, list[StoreRecord]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[StoreRecord]:
        for bucket in self._cells.values():
            yield from bucket

    def put(self, store: StoreRecord, previous: StoreRecord | None = None) -> None:
        """Insert `store`, replacing `previous` (the record it had before, if any)."""
        if previous is not None:
            self.remove(previous)
        self._cells.setdefault(cell_key(store.lat, store.lng), []).append(store)
        self._count += 1

    def remove(self, store: StoreRecord) -> None:
        key = cell_key(store.lat, store.lng)
        bucket = self._cells.get(key)
        if not bucket:
            return
        for i, s in enumerate(bucket):
            if s.store_id == store.store_id:
                bucket[i] = bucket[-1]
                bucket.pop()
                self._count -= 1
                break
        if not bucket:
            del self._cells[key]

    def nearest(
        self,
        lat: float,
        lng: float,
        radius_m: float,
        keep: Callable[[StoreRecord], bool] | None = None,
        limit: int = 10,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[float, StoreRecord]]:
        """Up to `limit` (distance_m, store) within radius_m, nearest first, ties by store_id;
        only those ordered after `after` (distance_m, store_id): the last one of a previous page."""
        best: list[tuple[float, bytes, StoreRecord]] = []  # max-heap via negated distance, then greater id
        bound = radius_m  # no hit can be farther than this
        # The flat estimate measures longitude straight across: across the antimeridian it would
        # put a store two kilometres away on the other side of the globe, so a search that
        # reaches it gives every candidate the haversine (which wraps); any other keeps it.
        flat = abs(lat) < _FLAT_MAX_LAT and abs(lng) + _lng_reach_deg(lat, radius_m) < 180.0
        ky = _M_PER_DEG
        kx = _M_PER_DEG * math.cos(math.radians(lat))
        cells = self._cells
        for ring_min_m, keys in self._cells_outward(lat, lng, radius_m):
            if ring_min_m > bound:
                break
            for key in keys:
                bucket = cells.get(key)
                if not bucket:
                    continue
                limit2 = (bound * _FLAT_SLACK + 1.0) ** 2
                for s in bucket:
                    if flat:
                        dy = (s.lat - lat) * ky
                        dx = (s.lng - lng) * kx
                        if dx * dx + dy * dy > limit2:
                            continue
                    d = haversine_m(lat, lng, s.lat, s.lng)
                    if d > bound:
                        continue
                    if after is not None and (d < after[0] or (d == after[0] and s.store_id <= after[1])):
                        continue
                    if keep is not None and not keep(s):
                        continue
                    entry = (-d, _dropped_first(s.store_id), s)
                    if len(best) < limit:
                        heapq.heappush(best, entry)
                    else:
                        heapq.heappushpop(best, entry)
                    if len(best) >= limit:
                        new_bound = -best[0][0]
                        if new_bound < bound:
                            bound = new_bound
                            limit2 = (bound * _FLAT_SLACK + 1.0) ** 2
        return sorted(((-nd, s) for nd, _, s in best), key=lambda h: (h[0], h[1].store_id))

    def _cells_outward(self, lat: float, lng: float, radius_m: float) -> Iterator[tuple[float, list[int]]]:
        ci, cj = math.floor(lat / CELL_DEG), _column(math.floor(lng / CELL_DEG))
        lat_cell_m = CELL_DEG * _M_PER_DEG
        max_i = math.ceil(radius_m / lat_cell_m) + 1
        max_lat = abs(lat) + radius_m / _M_PER_DEG
        half = 1 << (_J_BITS - 1)
        if max_lat >= _POLAR_LAT:
            # A store a few hundred metres from a user at the pole may be on any meridian, and
            # no count of columns (under a metre wide there) bounds the walk: every column of
            # the rows in reach is read.
            yield 0.0, [k for k in self._cells if abs(((k + half) >> _J_BITS) - ci) <= max_i]
            return
        # Longitude cells shrink towards the poles: use the narrowest width inside the search
        # box so the ring's lower bound on distance stays a true lower bound.
        lng_cell_m = CELL_DEG * _M_PER_DEG * math.cos(math.radians(max_lat))
        # Columns are counted both ways round the globe, so half of them reach every column.
        max_j = min(math.ceil(radius_m / lng_cell_m) + 1, _HALF_COLUMNS)
        # A box that reaches past ±180° wraps round to the other side, where going round both
        # ways column cj + _HALF_COLUMNS is cj - _HALF_COLUMNS: it is walked once. Any other
        # box keeps the plain arithmetic.
        wraps = not -_HALF_COLUMNS <= cj - max_j <= cj + max_j < _HALF_COLUMNS
        if (2 * max_i + 1) * (2 * max_j + 1) > 4 * len(self._cells) + 64:
            # A box with more cells than there are occupied cells (near the poles, or a sparse
            # index): walking the occupied cells is cheaper than walking the box.
            low = (1 << _J_BITS) - 1
            if wraps:
                yield 0.0, [
                    k for k in self._cells
                    if abs(((k + half) >> _J_BITS) - ci) <= max_i
                    and abs((((k + half) & low) - half - cj + _HALF_COLUMNS) % _COLUMNS - _HALF_COLUMNS) <= max_j
                ]
                return
            yield 0.0, [
                k for k in self._cells
                if abs(((k + half) >> _J_BITS) - ci) <= max_i and abs(((k + half) & low) - half - cj) <= max_j
            ]
            return
        step_m = min(lat_cell_m, lng_cell_m)
        yield 0.0, [(ci << _J_BITS) + cj]
        # Any cell of ring r is at least r-1 whole cells away along one axis.
        for r in range(1, max(max_i, max_j) + 1):
            ring_min = (r - 1) * step_m
            if ring_min > radius_m:
                break
            keys = []
            span_j = min(r, max_j)
            if wraps:
                columns = [_column(cj + dj) for dj in range(-span_j, min(span_j, _HALF_COLUMNS - 1) + 1)]
                sides = [_column(cj - r)] + ([_column(cj + r)] if r < _HALF_COLUMNS else [])
                for di in range(-min(r, max_i), min(r, max_i) + 1):
                    row = (ci + di) << _J_BITS
                    if abs(di) == r:
                        keys.extend([row + j for j in columns])
                    elif r <= max_j:
                        keys.extend([row + j for j in sides])
                yield ring_min, keys
                continue
            for di in range(-min(r, max_i), min(r, max_i) + 1):
                row = (ci + di) << _J_BITS
                if abs(di) == r:
                    for dj in range(-span_j, span_j + 1):
                        keys.append(row + cj + dj)
                elif r <= max_j:
                    keys.append(row + cj - r)
                    keys.append(row + cj + r)
            yield ring_min, keys


class _Timetable:
    __slots__ = ("hours", "time_zone", "index")

    def __init__(self, hours: Hours, time_zone: str) -> None:
        self.hours = hours
        self.time_zone = time_zone
        self.index = GeoIndex()


def _timetable_key(store: StoreRecord) -> tuple[int, str]:
    # The id of the hours, which are interned: hashing the hours tuple on every put would slow an
    # import of 300,000 stores; the _Timetable keeps the hours alive.
    return id(store.hours), store.time_zone


class BrandIndex(GeoIndex):
    """One brand's stores, and the same stores (but those closed for good) split by timetable.

    Why: every store of a timetable opens and closes at the same instants, and a brand has a
    handful of timetables. At 03:30 most are closed, and a search for the nearest open store
    that dismissed the closed ones one at a time read every store of the brand within its
    radius: tens of ms per brand at 300,000 stores, on the catalog's one event loop. It now
    passes over a closed timetable whole and searches the open ones only.

    A brand with more than MAX_TIMETABLES timetables is searched whole, so it keeps no split:
    an index per timetable costs ~600 bytes, and with a timetable per store (odd hours, or hours
    no longer shared once model.MAX_REMEMBERED_TIMETABLES is reached) the split weighed ten
    times the brand's index. It is split again once down to SPLIT_AGAIN_TIMETABLES, noticed
    within len/RECOUNT_EVERY_SHARE changes: until then only its night searches are slower."""

    def __init__(self) -> None:
        super().__init__()
        # None while the brand has too many timetables to be searched by timetable.
        self._timetables: dict[tuple[int, str], _Timetable] | None = {}
        # While not split: moves and removals left before the timetables are counted again.
        self._changes_before_recount = 0

    def put(self, store: StoreRecord, previous: StoreRecord | None = None) -> None:
        super().put(store, previous)  # the previous record leaves through self.remove
        timetables = self._timetables
        if store.closed or timetables is None:
            return
        key = _timetable_key(store)
        timetable = timetables.get(key)
        if timetable is None:
            if len(timetables) == MAX_TIMETABLES:
                self._stop_splitting()
                return
            timetable = timetables[key] = _Timetable(store.hours, store.time_zone)
        timetable.index.put(store)

    def remove(self, store: StoreRecord) -> None:
        super().remove(store)
        timetables = self._timetables
        if timetables is None:
            # Only a store leaving its timetable can bring the count down.
            self._changes_before_recount -= 1
            if self._changes_before_recount <= 0:
                self._split_if_few_timetables()
            return
        if store.closed:
            return
        key = _timetable_key(store)
        timetable = timetables.get(key)
        if timetable is None:
            return
        timetable.index.remove(store)
        if not len(timetable.index):
            del timetables[key]

    def _stop_splitting(self) -> None:
        self._timetables = None
        self._changes_before_recount = max(len(self) // RECOUNT_EVERY_SHARE, 1)

    def _split_if_few_timetables(self) -> None:
        keys: set[tuple[int, str]] = set()
        for store in self:
            if not store.closed:
                keys.add(_timetable_key(store))
                if len(keys) > SPLIT_AGAIN_TIMETABLES:
                    self._stop_splitting()
                    return
        timetables: dict[tuple[int, str], _Timetable] = {}
        for cell, bucket in self._cells.items():
            for store in bucket:
                if not store.closed:
                    key = _timetable_key(store)
                    timetable = timetables.get(key)
                    if timetable is None:
                        timetable = timetables[key] = _Timetable(store.hours, store.time_zone)
                    # Same cell as in the brand's index: no need to work it out again.
                    index = timetable.index
                    index._cells.setdefault(cell, []).append(store)
                    index._count += 1
        self._timetables = timetables

    def nearest_open(
        self,
        lat: float,
        lng: float,
        radius_m: float,
        clock: OpenClock,
        keep: Callable[[StoreRecord], bool] | None = None,
        limit: int = 1,
        after: tuple[float, str] | None = None,
    ) -> list[tuple[float, StoreRecord]]:
        """nearest() over the stores open at the clock's instant that `keep` keeps: the same
        stores, in the same order, as nearest() with a filter of both."""
        timetables = self._timetables
        if timetables is not None:
            if not timetables:
                return []
            open_now = [t.index for t in timetables.values() if clock.hours_open(t.hours, t.time_zone)]
            if len(open_now) < len(timetables):
                return _nearest_of(open_now, lat, lng, radius_m, keep, limit, after)
        # Daytime: open stores are everywhere, the whole index finds the nearest at once. And a
        # brand of too many timetables: one search per open timetable would cost more.
        if keep is None:
            return self.nearest(lat, lng, radius_m, clock.is_open, limit, after)
        return self.nearest(lat, lng, radius_m, lambda s: clock.is_open(s) and keep(s), limit, after)


def _nearest_of(
    indexes: list[GeoIndex], lat: float, lng: float, radius_m: float, keep: Callable[[StoreRecord], bool] | None, limit: int,
    after: tuple[float, str] | None = None,
) -> list[tuple[float, StoreRecord]]:
    """The `limit` nearest over several indexes, as one index holding them all would answer."""
    best: list[tuple[float, StoreRecord]] = []
    bound = radius_m
    for index in sorted(indexes, key=len, reverse=True):  # the biggest is likely the nearest: bound the rest
        best.extend(index.nearest(lat, lng, bound, keep, limit, after))
        if len(best) >= limit:
            # Of stores at the same distance nearest() keeps the smaller store_id: so does this.
            best.sort(key=lambda h: (h[0], h[1].store_id))
            del best[limit:]
            bound = best[-1][0]
    return sorted(best, key=lambda h: (h[0], h[1].store_id))
