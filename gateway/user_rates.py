"""How fast one user may call the gateway.

Why: admission control protects the suite as a whole, but it sheds whoever comes next, so one
script tapping PlaceOrder or OrderByText (the natural-language parse is the costliest request)
hundreds of times a second takes slots a crowd of real phones needs. A person taps a few times a
second at most, and an app opening a screen fires a handful of calls at once: each user gets
`rate` calls per second with bursts of up to `burst`, and beyond that RESOURCE_EXHAUSTED /
USER_RATE_LIMITED with the wait until its next call would be let through (RetryInfo).

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one number): per
user only the time its bucket will be full again ("theoretical arrival time"). A user whose time
has passed is the same as one never seen, so forgetting it loses nothing; memory stays bounded
by `tracked` users, past which the forgettable go first and then, only if the crowd is larger
than `tracked` busy users, the longest known.
"""
from __future__ import annotations

import math
from datetime import timedelta

from services.common.clock import Clock, SystemClock
from services.common.errors import ResourceExhausted

__all__ = ["UserRates", "USER_RATE_LIMITED"]

USER_RATE_LIMITED = "USER_RATE_LIMITED"


class UserRates:
    def __init__(self, rate: float, burst: int, tracked: int = 100_000, *, clock: Clock | None = None) -> None:
        """rate: calls per second a user keeps up (0 turns the limit off); burst: calls at once."""
        if rate < 0 or not math.isfinite(rate) or burst < 1 or tracked < 1:
            raise ValueError("rate must be >= 0 and finite, burst and tracked >= 1")
        self.enabled = rate > 0
        self.interval = 1.0 / rate if rate else 0.0
        self.tolerance = (burst - 1) * self.interval
        self.tracked = tracked
        self.clock = clock or SystemClock()
        # Seconds are counted from here: at Unix-time magnitudes a float would round every
        # 0.2 s step by ~0.2 µs and the error would pile up on a busy user's time.
        self._epoch = self.clock.now()
        self._last = 0.0  # the latest `now` seen, seconds since _epoch
        self._full_at: dict[str, float] = {}
        self.refused = 0

    def take(self, user: str) -> None:
        """Count one call of `user`, or raise RESOURCE_EXHAUSTED / USER_RATE_LIMITED."""
        if not self.enabled:
            return
        now = self._elapsed()
        full_at = max(self._full_at.get(user, now), now)
        wait = full_at - self.tolerance - now
        if wait > 1e-9:  # not float noise: 19 x 0.2 is 3.8000000000000003
            self.refused += 1
            raise ResourceExhausted(
                USER_RATE_LIMITED,
                "操作太频繁，请稍后再试 / too many requests from this account, slow down",
                max(1, math.ceil(round(wait * 1000, 3))),  # float noise must not add a millisecond
            )
        self._full_at[user] = full_at + self.interval
        if len(self._full_at) > self.tracked:
            self._forget(now)

    def _elapsed(self) -> float:
        """Seconds since _epoch, never going back. Why: the Clock is the wall clock, which NTP
        may step back; every user seen in the last seconds would then have a bucket full until
        a minute ahead and be refused for that minute (a crowd locked out at lunch time). Time
        that ran backwards is taken as no time passing: the epoch moves back with the clock."""
        now = (self.clock.now() - self._epoch).total_seconds()
        if now < self._last:
            self._epoch -= timedelta(seconds=self._last - now)
            return self._last
        self._last = now
        return now

    def _forget(self, now: float) -> None:
        for u in [u for u, t in self._full_at.items() if t <= now]:
            del self._full_at[u]
        if len(self._full_at) > self.tracked * 3 // 4:
            # Nearly every remembered user is busy: drop the longest known (dicts keep insertion
            # order) down to half, so the next scan is at least tracked / 4 calls away.
            for u in list(self._full_at)[: len(self._full_at) - self.tracked // 2]:
                del self._full_at[u]

    def __len__(self) -> int:
        return len(self._full_at)
