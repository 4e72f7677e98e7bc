"""How fast one caller (a user at the gateway, a merchant at the order service and catalog) may call.

Why: admission control protects a process as a whole, but it sheds whoever comes next, so one
caller calling as fast as it can takes the slots everyone else needs. Each caller gets `rate`
calls per second with bursts of up to `burst`; beyond that RESOURCE_EXHAUSTED with the owner's
reason and the wait until its next call would be let through (RetryInfo).

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one number): per
caller only the time its bucket will be full again ("theoretical arrival time"). A caller whose
time has passed is the same as one never seen, so forgetting it loses nothing; memory stays
bounded by `tracked` callers, past which the forgettable go first and then, only if the crowd is
larger than `tracked` busy callers, the longest known.

No lock: take() runs on the event-loop thread, between two awaits, as everything else that
reads or writes a bucket does.
"""
from __future__ import annotations

import math
from datetime import timedelta

from .clock import Clock, SystemClock
from .errors import ResourceExhausted

__all__ = ["KeyedRates"]


class KeyedRates:
    def __init__(
        self, rate: float, burst: int, tracked: int = 100_000, *, clock: Clock | None = None, reason: str, message: str,
    ) -> None:
        """rate: calls per second a caller keeps up (0 turns the limit off); burst: calls at once.
        reason, message: of the refusal (ErrorInfo reason; Chinese + English)."""
        # A rate so small its interval is no finite number of seconds (1e-320) would turn the
        # limit off unannounced; refused like any other bad setting.
        if rate < 0 or not math.isfinite(rate) or (rate and not math.isfinite(1.0 / rate)) or burst < 1 or tracked < 1:
            raise ValueError("rate must be 0 or a positive number of calls per second whose interval is finite, burst and tracked >= 1")
        self.enabled = rate > 0
        self.interval = 1.0 / rate if rate else 0.0
        self.tolerance = (burst - 1) * self.interval
        self.tracked = tracked
        self.reason = reason
        self.message = message
        self.clock = clock or SystemClock()
        # Seconds are counted from here: at Unix-time magnitudes a float would round every
        # 0.2 s step by ~0.2 µs and the error would pile up on a busy caller's time.
        self._epoch = self.clock.now()
        self._last = 0.0  # the latest `now` seen, seconds since _epoch
        self._full_at: dict[str, float] = {}
        self.refused = 0

    def refusal(self, key: str) -> ResourceExhausted | None:
        """Count one call of `key` and return None, or return (not raise) its refusal: callers
        that refuse without exceptions (the kit's pipeline) must not pay for one."""
        if not self.enabled:
            return None
        now = self._elapsed()
        full_at = max(self._full_at.get(key, now), now)
        wait = full_at - self.tolerance - now
        if wait > 1e-9:  # not float noise: 19 x 0.2 is 3.8000000000000003
            self.refused += 1
            # float noise must not add a millisecond
            return ResourceExhausted(self.reason, self.message, max(1, math.ceil(round(wait * 1000, 3))))
        self._full_at[key] = full_at + self.interval
        if len(self._full_at) > self.tracked:
            self._forget(now)
        return None

    def take(self, key: str) -> None:
        """Count one call of `key`, or raise RESOURCE_EXHAUSTED with the owner's reason."""
        err = self.refusal(key)
        if err is not None:
            raise err

    def _elapsed(self) -> float:
        """Seconds since _epoch, never going back. Why: the Clock is the wall clock, which NTP
        may step back; every caller seen in the last seconds would then have a bucket full until
        a minute ahead and be refused for that minute (a crowd locked out at lunch time). Time
        that ran backwards is taken as no time passing: the epoch moves back with the clock."""
        now = (self.clock.now() - self._epoch).total_seconds()
        if now < self._last:
            self._epoch -= timedelta(seconds=self._last - now)
            return self._last
        self._last = now
        return now

    def _forget(self, now: float) -> None:
        for k in [k for k, t in self._full_at.items() if t <= now]:
            del self._full_at[k]
        if len(self._full_at) > self.tracked * 3 // 4:
            # Nearly every remembered caller is busy: drop the longest known (dicts keep
            # insertion order) down to half, so the next scan is at least tracked / 4 calls away.
            for k in list(self._full_at)[: len(self._full_at) - self.tracked // 2]:
                del self._full_at[k]

    def __len__(self) -> int:
        return len(self._full_at)
