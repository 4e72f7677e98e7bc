"""In-memory grid index of store locations for nearest-first search.

Why a grid and not SQLite R*Tree: 300,000 points of two floats fit in a few tens of MB, and a
nearest-k query must finish in well under 10 ms including the open-now and brand filters, which
an SQL round trip per query (thread hop + R*Tree + join) would eat most of. Cells are
CELL_DEG degrees square (~1.1 km north-south). A query walks rings of cells outward from the
query cell and stops once the nearest unvisited ring is farther than the k-th hit found so far,
so its cost depends on local density, not on the total number of stores.
"""
from __future__ import annotations

import heapq
import math
from typing import Callable, Iterator

from .model import EARTH_RADIUS_M, StoreRecord, haversine_m

CELL_DEG = 0.01
_M_PER_DEG = math.pi * EARTH_RADIUS_M / 180.0  # ~111.2 km


def cell_of(lat: float, lng: float) -> tuple[int, int]:
    return (math.floor(lat / CELL_DEG), math.floor(lng / CELL_DEG))


class GeoIndex:
    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], list[StoreRecord]] = {}
        self._cell_of_store: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._cell_of_store)

    def put(self, store: StoreRecord) -> None:
        """Insert or move a store (keyed by store_id); the record object replaces the old one."""
        new_cell = cell_of(store.lat, store.lng)
        old_cell = self._cell_of_store.get(store.store_id)
        if old_cell is not None:
            bucket = self._cells[old_cell]
            for i, s in enumerate(bucket):
                if s.store_id == store.store_id:
                    if old_cell == new_cell:
                        bucket[i] = store
                        return
                    bucket[i] = bucket[-1]
                    bucket.pop()
                    break
            if not bucket:
                del self._cells[old_cell]
        self._cells.setdefault(new_cell, []).append(store)
        self._cell_of_store[store.store_id] = new_cell

    def nearest(
        self,
        lat: float,
        lng: float,
        radius_m: float,
        keep: Callable[[StoreRecord], bool] | None = None,
        limit: int = 10,
    ) -> list[tuple[float, StoreRecord]]:
        """Up to `limit` (distance_m, store) within radius_m, nearest first, ties by store_id."""
        best: list[tuple[float, tuple[int, ...], StoreRecord]] = []  # max-heap via negated distance
        for ring_min_m, cells in self._cells_outward(lat, lng, radius_m):
            if len(best) >= limit and ring_min_m > -best[0][0]:
                break
            for cell in cells:
                bucket = self._cells.get(cell)
                if not bucket:
                    continue
                for s in bucket:
                    d = haversine_m(lat, lng, s.lat, s.lng)
                    if d > radius_m:
                        continue
                    if len(best) >= limit and d >= -best[0][0]:
                        continue
                    if keep is not None and not keep(s):
                        continue
                    entry = (-d, _neg_key(s.store_id), s)
                    if len(best) < limit:
                        heapq.heappush(best, entry)
                    else:
                        heapq.heapreplace(best, entry)
        out = sorted(((-nd, s) for nd, _, s in best), key=lambda h: (h[0], h[1].store_id))
        return out

    def _cells_outward(self, lat: float, lng: float, radius_m: float) -> Iterator[tuple[float, list[tuple[int, int]]]]:
        ci, cj = cell_of(lat, lng)
        lat_cell_m = CELL_DEG * _M_PER_DEG
        # Longitude cells shrink towards the poles: use the narrowest width inside the search
        # box so the ring's lower bound on distance stays a true lower bound.
        max_lat = min(89.9, abs(lat) + radius_m / _M_PER_DEG)
        lng_cell_m = max(1.0, CELL_DEG * _M_PER_DEG * math.cos(math.radians(max_lat)))
        max_i = math.ceil(radius_m / lat_cell_m) + 1
        max_j = min(math.ceil(radius_m / lng_cell_m) + 1, int(360 / CELL_DEG))
        if (2 * max_i + 1) * (2 * max_j + 1) > 4 * len(self._cells) + 64:
            # A box with more cells than there are occupied cells (near the poles, or a sparse
            # index): walking the occupied cells is cheaper than walking the box.
            yield 0.0, [c for c in self._cells if abs(c[0] - ci) <= max_i and abs(c[1] - cj) <= max_j]
            return
        yield from self._rings(ci, cj, max_i, max_j, min(lat_cell_m, lng_cell_m), radius_m)

    @staticmethod
    def _rings(ci: int, cj: int, max_i: int, max_j: int, step_m: float, radius_m: float) -> Iterator[tuple[float, list[tuple[int, int]]]]:
        yield 0.0, [(ci, cj)]
        # Any cell of ring r is at least r-1 whole cells away along one axis.
        for r in range(1, max(max_i, max_j) + 1):
            ring_min = (r - 1) * step_m
            if ring_min > radius_m:
                break
            cells = []
            span_j = min(r, max_j)
            for di in range(-min(r, max_i), min(r, max_i) + 1):
                if abs(di) == r:
                    for dj in range(-span_j, span_j + 1):
                        cells.append((ci + di, cj + dj))
                elif r <= max_j:
                    cells.append((ci + di, cj - r))
                    cells.append((ci + di, cj + r))
            yield ring_min, cells


def _neg_key(store_id: str) -> tuple[int, ...]:
    # Among equal distances the heap evicts the larger store_id first, so results are stable.
    return tuple(-ord(c) for c in store_id)
