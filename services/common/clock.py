"""Time as an injectable dependency.

Rules such as reservation TTLs, campaign windows and daily draws depend on "now"; passing a
Clock instead of calling datetime.now() lets tests move time deterministically.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "FakeClock", "now_ms", "to_ms", "from_ms", "is_numeric_date"]

# Seconds at the start of the year 10000: no token or grant lives that long.
_LAST_NUMERIC_DATE = 253_402_300_800


def is_numeric_date(value: object) -> bool:
    """A JWT NumericDate we can compute with: a number (not a bool) between the years 0 and
    10000. Why bounded: JSON carries NaN (never expires, since it compares false to every time)
    and integers of any size (10**400 overflows every float conversion, which had turned a
    signed token into INTERNAL instead of an invalid token). Compared without converting, so
    nothing overflows here."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and -_LAST_NUMERIC_DATE < value < _LAST_NUMERIC_DATE
    )


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start or datetime(2026, 1, 28, 12, 0, tzinfo=timezone.utc))

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float = 0, **timedelta_kwargs: float) -> datetime:
        self._now += timedelta(seconds=seconds, **timedelta_kwargs)
        return self._now

    def set(self, dt: datetime) -> None:
        self._now = _aware(dt)


def _aware(dt: datetime) -> datetime:
    # A naive datetime would silently compare wrong against stored UTC values.
    if dt.tzinfo is None:
        raise ValueError("FakeClock needs a timezone-aware datetime")
    return dt.astimezone(timezone.utc)


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds: the portable way stores keep timestamps (integers sort and compare)."""
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def now_ms(clock: Clock) -> int:
    return to_ms(clock.now())
