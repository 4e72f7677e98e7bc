"""Adaptive admission control: a concurrency limit that follows observed latency, above a
floor, plus a short bounded wait, with criticality-based headroom.

Why: a server that accepts everything under a flash crowd queues work until every call misses
its deadline (the 2026 "当前参与人数较多" collapse). Limiting in-flight calls keeps latency near
its usual level; excess is answered at once with UNAVAILABLE/OVERLOADED + retry-after, which
costs microseconds instead of a full request.

Limit algorithm (Netflix concurrency-limits Gradient2):
every `update_interval` seconds the average latency of the interval (short RTT) is compared with
a long-term, exponentially smoothed latency (long RTT, time constant `long_window` seconds of
busy time, the first `warmup` intervals averaged plainly):
    gradient = clamp(tolerance * long / short, 0.5, 1)
    new      = limit * (1 - smoothing) + (limit * gradient + sqrt(limit)) * smoothing
So latency up to `tolerance` x its usual level leaves the limit growing by the sqrt(limit)
queue allowance; only latency beyond that (real queueing) shrinks it, and at most by half per
interval before smoothing.

Latency target (`target_latency`, MIANDAN_TARGET_LATENCY_MS, default 250 ms): the gradient above
only compares latency with its own history, and under a sustained flood that history drifts up
with it (the long RTT is an average of busy time), so the limit settles where calls take a second
or more. An absolute target caps that: when the interval's average exceeds it, the gradient is at
most target / short, whatever the history says. A campaign has a latency objective (the
overload target is p99 < 500 ms); 250 ms average leaves room for the tail. Deadline misses (ok=False) back off by 10 %. A limit that is not
being used (in flight < limit / 2) is left alone: it neither grows toward max_limit while idle
(and then admits a whole flash crowd at once) nor shrinks for latency it did not cause.

Why not the minimum RTT (Vegas / the first version of this module): on a shared 2-core machine
the minimum is one lucky call with an idle CPU, unrealistically small; ordinary CPU queueing
then looks like 5-10x "congestion" and collapses every limit (80 concurrent orders through the
gateway drove card and catalog to 4 and shed CRITICAL calls they could have served). A
long-window average is what the service usually takes. If latency recovers after a prolonged
slow period (long > 2 x short) the long RTT is decayed by 5 % per interval so the baseline
follows it down quickly instead of in `long_window`.

Floor (`min_limit`, MIANDAN_MIN_CONCURRENCY in services, default 32, see config.py): below
some concurrency, shedding buys nothing: the work a few dozen in-flight calls queue is a few
milliseconds of CPU, far inside every deadline, so a limit there only throws calls away.

Headroom per criticality (Google SRE "Handling Overload"): SHEDDABLE may fill up to 50 % of the
limit and never waits, DEFAULT up to 80 % and waits up to max_wait/2, CRITICAL up to 100 % and
waits up to max_wait. Every call of a level that may wait does, however many wait ahead of it:
a rule that refused a call at once when the calls waiting ahead outnumbered the slots expected
to free within its wait (rate calls finish at x wait x 0.4) fed on itself under callers that come
straight back (make bench-card, 64 clients above a limit of 32: each refusal took CPU from the
calls, fewer finished, the expected slots shrank, more were refused; Reserve+Confirm fell from
976 to 328/s among 6,481 refusals in 4 s), and only moved the overload benchmark's rejection
p99 within its noise.
Waiting is CoDel-like: once a waiter times out (a standing queue: waiting does not help),
calls of its level and below stop waiting for one interval and are refused at once: under a flood a refusal that took max_wait to say no is a slow refusal, and the caller's
retry comes back anyway. Only of its level and below: DEFAULT waiters timing out (they may use 80 %
of the limit) said nothing about CRITICAL ones, and refusing orders at once because browsing
queued shed orders a freed slot would have served within milliseconds. An internal caller may raise
or lower a call's criticality with x-miandan-criticality (the gateway passes the end-user
call's level on).

Event-loop lag (`watch_loop_lag`, MIANDAN_MAX_LOOP_LAG_MS, off by default; the benchmarks used 50 ms until gRPC's own bound on calls waiting for the loop, Settings.max_pending_calls, did the job more directly): the latency the
limit learns from starts when a call reaches the interceptor, but under a flood calls first wait in
the event loop's ready queue behind every other callback, and that wait is invisible to it: at
three times capacity we saw refusals answered after a second, although each took microseconds.
A timer firing every 10 ms measures how late the loop runs it; while that lag (smoothed over two
probes) is above target, every new call is refused at once, whatever its criticality, so the loop
spends its time finishing the calls it holds rather than starting new ones, and drains.

Single-threaded by design: all methods must be called from the event loop thread.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

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
    "admission_from_settings",
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
        target_latency: float | None = None,
        smoothing: float = 0.2,
        update_interval: float = 0.1,
        min_samples: int = 5,
        long_window: float = 60.0,
        warmup: int = 10,
        queue_size: Callable[[float], float] = math.sqrt,
        retry_after_ms: int = 1000,
        time_source: Callable[[], float] = time.monotonic,
        on_limit_change: Callable[[float], None] | None = None,
    ) -> None:
        if not 1 <= min_limit <= initial_limit <= max_limit:
            raise ValueError("need 1 <= min_limit <= initial_limit <= max_limit")
        if not (tolerance >= 1 and 0 < smoothing <= 1 and update_interval > 0 and long_window > 0 and warmup >= 1):
            raise ValueError("need tolerance >= 1, 0 < smoothing <= 1, update_interval > 0, long_window > 0, warmup >= 1")
        self.min_limit, self.max_limit = float(min_limit), float(max_limit)
        self.limit = float(initial_limit)
        self.in_flight = 0
        self.max_wait_ms = max_wait_ms
        self._wait_s = {CRITICAL: max_wait_ms / 1000, DEFAULT: max_wait_ms / 2000, SHEDDABLE: 0.0}
        self.max_waiters = max_waiters if max_waiters is not None else max(16, initial_limit)
        self.tolerance, self.smoothing = tolerance, smoothing
        if target_latency is not None and target_latency <= 0:
            raise ValueError("target_latency must be > 0 seconds (or None for no target)")
        self.target_latency = target_latency
        self.update_interval, self.min_samples = update_interval, min_samples
        self.long_window, self.warmup, self.queue_size = long_window, warmup, queue_size
        # Per-update EWMA weight: `long_window` seconds of busy intervals. Counted in updates,
        # not wall time, so an idle hour does not erase the baseline.
        self._long_alpha = 1.0 - math.exp(-update_interval / long_window)
        self._retry_ms = {CRITICAL: retry_after_ms, DEFAULT: retry_after_ms, SHEDDABLE: 2 * retry_after_ms}
        self._time = time_source
        self.on_limit_change = on_limit_change
        self._waiters: dict[str, deque[asyncio.Future[bool]]] = {CRITICAL: deque(), DEFAULT: deque()}
        self._n_waiting = 0
        # Per waiting level: a standing queue of DEFAULT waiters says nothing about CRITICAL
        # ones, which may take 100 % of the limit (and get slots DEFAULT may not).
        self._congested_until = {CRITICAL: -math.inf, DEFAULT: -math.inf}
        self.rejected = 0
        # Event-loop lag (see watch_loop_lag); never lagging until a probe says so.
        self.loop_lag = 0.0
        self.lagging = False
        self.lag_refusals = 0
        self._lag_probe: asyncio.TimerHandle | None = None
        # interval accumulators
        now = time_source()
        self._sum = 0.0
        self._n = 0
        self._max_seen = 0
        self._dropped = False
        self._next_update = now + update_interval
        self.long_rtt = 0.0  # seconds; 0 until the first update
        self.short_rtt = 0.0  # the last interval's average, seconds
        self._updates = 0
        self._caps: dict[str, int] = {}
        self._set_caps()

    # --- public API ----------------------------------------------------------------------

    def retry_after_ms(self, criticality: str = DEFAULT) -> int:
        return self._retry_ms.get(criticality, self._retry_ms[DEFAULT])

    def try_enter(self, criticality: str) -> bool:
        """Take a slot without waiting; False means "no slot now". Allocation-free hot path."""
        if self.lagging:
            self.lag_refusals += 1
            return False
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
        level = CRITICAL if criticality == CRITICAL else DEFAULT
        # DEFAULT may fill the wait queue only as far as its share of the limit, so a queue full
        # of browsing never turns an order away at once.
        room = self.max_waiters if level == CRITICAL else int(self.max_waiters * _SHARE[DEFAULT])
        if wait_s <= 0 or self._n_waiting >= room or self.lagging:
            self.rejected += 1
            return False
        if self._time() < self._congested_until[level]:
            self.rejected += 1
            return False
        queue = self._waiters[level]
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
            if not (fut.done() and not fut.cancelled() and fut.result()):
                # Timed out or cancelled: out of the queue now. _grant skips such futures, but
                # only reaches them when a slot frees under this level's cap, and a CRITICAL load
                # holding every slot for minutes would leave each wave of DEFAULT waiters behind.
                _forget(queue, fut)
        if not granted:
            self.rejected += 1
            until = self._time() + self.update_interval
            # A CRITICAL wait in vain: nobody's waiting helps. A DEFAULT one: DEFAULT's doesn't.
            for stopped in (CRITICAL, DEFAULT) if level == CRITICAL else (DEFAULT,):
                self._congested_until[stopped] = until
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
            now = self._time()
            if now >= self._next_update:
                self._update(now)
        if self._n_waiting:
            self._grant()

    def watch_loop_lag(self, target_s: float, period_s: float = 0.01) -> None:
        """Start probing the running event loop's lag (see module docstring); target_s <= 0
        leaves calls unaffected by lag."""
        if target_s <= 0 or self._lag_probe is not None:
            return
        loop = asyncio.get_running_loop()

        def probe(expected: float) -> None:
            now = loop.time()
            self.loop_lag = (self.loop_lag + max(0.0, now - expected)) / 2
            self.lagging = self.loop_lag > target_s
            self._lag_probe = loop.call_later(period_s, probe, now + period_s)

        self._lag_probe = loop.call_later(period_s, probe, loop.time() + period_s)

    def stop_watching_loop_lag(self) -> None:
        if self._lag_probe is not None:
            self._lag_probe.cancel()
            self._lag_probe = None
        self.lagging = False

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
        limit = self.limit
        if self._n:
            short = self._sum / self._n
            self.short_rtt = short
            self._updates += 1
            if self._updates <= self.warmup:
                self.long_rtt += (short - self.long_rtt) / self._updates  # plain mean while warming up
            else:
                self.long_rtt += (short - self.long_rtt) * self._long_alpha
            if self.long_rtt > 2 * short:
                # Latency recovered after a long slow spell: follow it down quickly.
                self.long_rtt *= 0.95
        else:
            short = 0.0
        if self._dropped:
            new = limit * 0.9
        elif self._max_seen < limit * 0.5:
            new = limit  # app-limited: this latency says nothing about our limit
        else:
            gradient = 1.0 if short <= 0 else max(0.5, min(1.0, self.tolerance * self.long_rtt / short))
            if self.target_latency is not None and short > self.target_latency:
                gradient = max(0.5, min(gradient, self.target_latency / short))
            target = limit * gradient + self.queue_size(limit)
            new = limit * (1 - self.smoothing) + target * self.smoothing
        new = max(self.min_limit, min(self.max_limit, new))
        self._sum, self._n, self._dropped = 0.0, 0, False
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


def admission_from_settings(settings: Any) -> AdmissionController:
    """The controller every server gets unless its wiring passes its own: starts at
    MIANDAN_MAX_CONCURRENCY, never adapts below MIANDAN_MIN_CONCURRENCY (capped at the start
    value, so an operator who sets a small limit gets it), may grow to 1000."""
    start = settings.max_concurrency
    return AdmissionController(
        start,
        min_limit=min(settings.min_concurrency, start),
        max_limit=max(1000, start),
        max_wait_ms=settings.max_wait_ms,
        target_latency=(settings.target_latency_ms / 1000) if getattr(settings, "target_latency_ms", 0) else None,
    )


def _forget(queue: deque[asyncio.Future[bool]], fut: asyncio.Future[bool]) -> None:
    # O(waiters): the queue holds only waiters still waiting, at most max_waiters of them.
    try:
        queue.remove(fut)
    except ValueError:  # already taken off by _grant
        pass


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
