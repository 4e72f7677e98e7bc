"""Deadline propagation: a callee never works past its caller's deadline.

Handlers pass `timeout=remaining(context)` to every upstream call, so the whole chain shares the
end user's deadline instead of each hop starting a fresh one.
"""
from __future__ import annotations

from typing import Any

from .errors import DeadlineExceeded

__all__ = ["remaining", "check", "DEADLINE_PASSED"]

DEADLINE_PASSED = "DEADLINE_PASSED"


def _passed() -> DeadlineExceeded:
    # A fresh instance per raise: re-raising one shared instance keeps growing its traceback.
    return DeadlineExceeded(DEADLINE_PASSED, "调用方已超时 / the caller's deadline has passed")


def remaining(context: Any, default: float = 5.0, margin: float = 0.005) -> float:
    """Seconds left for an upstream call: the caller's remaining time minus `margin` (room to
    send our own reply), or `default` when the caller set no deadline. Raises DeadlineExceeded
    if nothing is left, so no work starts that nobody will wait for."""
    left = context.time_remaining()
    if left is None:
        return default
    left -= margin
    if left <= 0:
        raise _passed()
    return left


def check(context: Any) -> None:
    """Raise DeadlineExceeded if the caller's deadline has already passed (call between steps)."""
    left = context.time_remaining()
    if left is not None and left <= 0:
        raise _passed()
