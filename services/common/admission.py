"""Adaptive admission control: a concurrency limit that follows observed latency, plus a short
bounded wait, with criticality-based headroom.

Why: a server that accepts everything under a flash crowd queues work until every call misses
its deadline (the 2026 "当前参与人数较多" collapse). Limiting in-flight calls keeps latency near
its minimum; excess is answered at once with UNAVAILABLE/OVERLOADED + retry-after, which costs
microseconds instead of a full request.

Limit algorithm (gradient style, after Netflix concurrency-limits Gradient2 / TCP Vegas):
every `update_interval` seconds we compare the average latency of the interval with the minimum
latency seen over a ~`min_rtt_window` window. gradient = clamp(tolerance * min_rtt / avg, 0.5, 1).
new = limit * gradient (+ sqrt(limit) growth when the limit was actually being used), smoothed.
Latency near the minimum => the limit grows ~sqrt; queueing delay => it shrinks
multiplicatively. Deadline misses (ok=False) back off by 10 %. The min RTT is windowed so a
permanently slower service (bigger DB) is re-learned instead of pinned to an old optimum.

Headroom per criticality (Google SRE "Handling Overload"): SHEDDABLE may fill up to 50 % of the
limit and never waits, DEFAULT up to 80 % and waits up to max_wait/2, CRITICAL up to 100 % and
waits up to max_wait. Waiting is CoDel-like: once a waiter times out (a standing queue: waiting
does not help), non-critical calls stop waiting for one interval.

Single-threaded by design: all methods must be called from the event loop thread.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from .errors import Unavailable

__all__ = [
    "CRITICAL",
    "DEFAULT",
    "SHEDDABLE",
    "CRITICALITIES",
    "CRITICALITY_KEY",
    "Overloaded",
    "Permit",
    "AdmissionController",
]

CRITICAL = "CRITICAL"
DEFAULT = "DEFAULT"
SHEDDABLE = "SHEDDABLE"
CRITICALITIES = (CRITICAL, DEFAULT, SHEDDABLE)
# Metadata key an internal caller may use to override a method's default criticality.
CRITICALITY_KEY = "x-miandan-criticality"

_SHARE = {CRITICAL: 1.0, DEFAULT: 0.8, SHEDDABLE: 0.5}


class Overloaded(Unavailable):
    def __init__(self, retry_after_ms: int) -> None:
        secs = max(1, math.ceil(retry_after_ms / 1000))
        super().__init__(
            "OVERLOADED",
            f"当前参与人数较多，请 {secs} 秒后再试 / Too many participants, please retry in {secs} s",
            retry_after_ms,
        )


class Permit:
    __slots__ = ("_controller", "_start", "_released")

    def __init__(self, controller: "AdmissionController") -> None:
        self._controller = controller
        self._start = controller._time()
        self._released = False

    def release(self, ok: bool = True) -> None:
        if not self._released:
            self._released = True
            self._controller.release(self._controller._time() - self._start, ok)


class AdmissionController:
    def __init__(
        self,
        initial_limit: int = 64,
        *,
        min_limit: int = 4,
        max_limit: int = 1000,
        max_wait_ms: float = 50.0,
        max_waiters: int | None = None,
        tolerance: float = 2.0,
        smoothing: float = 0.5,
        update_interval: float = 0.1,
        min_samples: int = 5,
        min_rtt_window: float = 30.0,
        retry_after_ms: int = 1000,
        time_source: Callable[[], float] = time.monotonic,
        on_limit_change: Callable[[float], None] | None = None,
    ) -> None:
        if not 1 <= min_limit <= initial_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= initial_limit <= max_limit")
        self.min_limit, self.max_limit = float(min_limit), float(max_limit)
        self.limit = float(initial_limit)
        self.in_flight = 0
        self.max_wait_ms = max_wait_ms
        self._wait_s = {CRITICAL: max_wait_ms / 1000, DEFAULT: max_wait_ms / 2000, SHEDDABLE: 0.0}
        self.max_waiters = max_waiters if max_waiters is not None else max(16, initial_limit)
        self.tolerance, self.smoothing = tolerance, smoothing
        self.update_interval, self.min_samples, self.min_rtt_window = update_interval, min_samples, min_rtt_window
        self._retry_ms = {CRITICAL: retry_after_ms, DEFAULT: retry_after_ms, SHEDDABLE: 2 * retry_after_ms}
        self._time = time_source
        self.on_limit_change = on_limit_change
        self._waiters: dict[str, deque[asyncio.Future[bool]]] = {CRITICAL: deque(), DEFAULT: deque()}
        self._n_waiting = 0
        self._congested_until = -math.inf
        self.rejected = 0
        # interval accumulators
        now = time_source()
        self._sum = 0.0
        self._n = 0
        self._win_min = math.inf
        self._max_seen = 0
        self._dropped = False
        self._next_update = now + update_interval
        self._prev_min = math.inf
        self._cur_min = math.inf
        self._min_window_end = now + min_rtt_window
        self._caps: dict[str, int] = {}
        self._set_caps()

    # --- public API ----------------------------------------------------------------------

    @property
    def min_rtt(self) -> float:
        return min(self._prev_min, self._cur_min)

    def retry_after_ms(self, criticality: str = DEFAULT) -> int:
        return self._retry_ms.get(criticality, self._retry_ms[DEFAULT])

    def try_enter(self, criticality: str) -> bool:
        """Take a slot without waiting; False means "no slot now". Allocation-free hot path."""
        cap = self._caps.get(criticality)
        if cap is None:
            cap = self._caps[DEFAULT]
        if self.in_flight < cap:
            self.in_flight += 1
            if self.in_flight > self._max_seen:
                self._max_seen = self.in_flight
            return True
        return False

    async def wait_enter(self, criticality: str) -> bool:
        """After try_enter failed: wait briefly for a slot. True = admitted (slot taken)."""
        wait_s = self._wait_s.get(criticality, self._wait_s[DEFAULT])
        if wait_s <= 0 or self._n_waiting >= self.max_waiters:
            self.rejected += 1
            return False
        if criticality != CRITICAL and self._time() < self._congested_until:
            self.rejected += 1
            return False
        queue = self._waiters[criticality if criticality == CRITICAL else DEFAULT]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        queue.append(fut)
        self._n_waiting += 1
        timer = loop.call_later(wait_s, _expire, fut)
        try:
            granted = await fut
        except asyncio.CancelledError:
            # Granted and cancelled in the same tick: the slot is ours and must be returned.
            if fut.done() and not fut.cancelled() and fut.result():
                self.in_flight -= 1
                self._grant()
            raise
        finally:
            self._n_waiting -= 1
            timer.cancel()
        if not granted:
            self.rejected += 1
            self._congested_until = self._time() + self.update_interval
        return granted

    def try_acquire(self, criticality: str = DEFAULT) -> Permit:
        if not self.try_enter(criticality):
            self.rejected += 1
            raise Overloaded(self.retry_after_ms(criticality))
        return Permit(self)

    async def acquire(self, criticality: str = DEFAULT) -> Permit:
        if not self.try_enter(criticality) and not await self.wait_enter(criticality):
            raise Overloaded(self.retry_after_ms(criticality))
        return Permit(self)

    @asynccontextmanager
    async def admit(self, criticality: str = DEFAULT) -> AsyncIterator[Permit]:
        permit = await self.acquire(criticality)
        ok = True
        try:
            yield permit
        except (asyncio.TimeoutError, asyncio.CancelledError):
            ok = False
            raise
        finally:
            permit.release(ok)

    def release(self, latency_s: float | None, ok: bool = True) -> None:
        """Give the slot back. latency_s=None: don't learn from this call (e.g. long streams).
        ok=False: the call missed its deadline — a congestion signal."""
        self.in_flight -= 1
        if latency_s is not None:
            if not ok:
                self._dropped = True
            self._sum += latency_s
            self._n += 1
            if latency_s < self._win_min:
                self._win_min = latency_s
            now = self._time()
            if now >= self._next_update:
                self._update(now)
        if self._n_waiting:
            self._grant()

    # --- internals -----------------------------------------------------------------------

    def _grant(self) -> None:
        for level in (CRITICAL, DEFAULT):
            queue = self._waiters[level]
            cap = self._caps[level]
            while queue and self.in_flight < cap:
                fut = queue.popleft()
                if fut.done():  # timed out or cancelled
                    continue
                self.in_flight += 1
                fut.set_result(True)

    def _update(self, now: float) -> None:
        if self._n < self.min_samples and not self._dropped:
            return  # too few samples for a meaningful average; keep accumulating
        avg = self._sum / self._n if self._n else 0.0
        if now >= self._min_window_end:
            self._prev_min, self._cur_min = self._cur_min, math.inf
            self._min_window_end = now + self.min_rtt_window
        if self._win_min < self._cur_min:
            self._cur_min = self._win_min
        min_rtt = self.min_rtt
        limit = self.limit
        if self._dropped:
            new = limit * 0.9
        else:
            gradient = 1.0 if avg <= 0 else max(0.5, min(1.0, self.tolerance * min_rtt / avg))
            target = limit * gradient
            # Only grow a limit that is being used; an idle service must not drift to max_limit
            # and then admit a whole flash crowd at once.
            if self._max_seen >= limit * 0.5:
                target += math.sqrt(target)
            new = limit * (1 - self.smoothing) + target * self.smoothing
        new = max(self.min_limit, min(self.max_limit, new))
        self._sum, self._n, self._win_min, self._dropped = 0.0, 0, math.inf, False
        self._max_seen = self.in_flight
        self._next_update = now + self.update_interval
        if new != limit:
            self.limit = new
            self._set_caps()
            if self.on_limit_change is not None:
                self.on_limit_change(new)
            if self._n_waiting:
                self._grant()

    def _set_caps(self) -> None:
        self._caps = {level: max(1, int(self.limit * share)) for level, share in _SHARE.items()}


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
