"""How fast one user may call the gateway.

Why: admission control protects the suite as a whole, but it sheds whoever comes next, so one
script tapping PlaceOrder or OrderByText (the natural-language parse is the costliest request)
hundreds of times a second takes slots a crowd of real phones needs. A person taps a few times a
second at most, and an app opening a screen fires a handful of calls at once: each user gets
`rate` calls per second with bursts of up to `burst`, and beyond that RESOURCE_EXHAUSTED /
USER_RATE_LIMITED with the wait until its next call would be let through (RetryInfo).

The limiter itself (GCRA, one number per user, at most `tracked` users remembered) is the kit's
services.common.rates.KeyedRates, which the order service and the catalog use per merchant.
"""
from __future__ import annotations

from services.common.clock import Clock
from services.common.rates import KeyedRates

__all__ = ["UserRates", "USER_RATE_LIMITED"]

USER_RATE_LIMITED = "USER_RATE_LIMITED"


class UserRates(KeyedRates):
    def __init__(self, rate: float, burst: int, tracked: int = 100_000, *, clock: Clock | None = None) -> None:
        """rate: calls per second a user keeps up (0 turns the limit off); burst: calls at once."""
        super().__init__(
            rate, burst, tracked, clock=clock, reason=USER_RATE_LIMITED,
            message="操作太频繁，请稍后再试 / too many requests from this account, slow down",
        )
