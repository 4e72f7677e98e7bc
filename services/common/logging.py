"""Structured logging: one JSON object per line on stderr, so logs are machine-parseable.

Call sites pass fields with `extra={...}`; every non-standard LogRecord attribute becomes a
JSON key. Formatting happens only for records that pass the level check, so disabled per-call
lines cost one isEnabledFor() lookup.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from typing import Any, Callable

__all__ = ["BurstLog", "JsonFormatter", "configure_logging", "get_logger"]

_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def configure_logging(settings: Any) -> logging.Logger:
    """Install the JSON handler on the "miandan" logger tree; returns "miandan.<service>".

    Idempotent: calling it twice (tests, reloads) does not duplicate lines."""
    root = logging.getLogger("miandan")
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        if getattr(handler, "_miandan", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._miandan = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # Our lines are complete; don't let a host app's root handler print them a second time.
    root.propagate = False
    return get_logger(settings.service)


def get_logger(service: str) -> logging.Logger:
    return logging.getLogger(f"miandan.{service}")


class BurstLog:
    """One line for a burst of like events: the first is logged, the ones within `quiet_s` of
    that line are only counted, and the next line after says how many it stands for (`untold`).

    For a fault that fails every call while it lasts (a peer refusing our credential mid-rotation):
    a line per call would bury the log at the rate of the traffic, and the operator needs one line
    to act on, plus one a while later while it is still going on."""

    def __init__(
        self, logger: logging.Logger, level: int = logging.ERROR, quiet_s: float = 60.0,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger, self.level, self.quiet_s, self._time = logger, level, quiet_s, time_source
        self._quiet_until = -math.inf
        self._untold = 0

    def log(self, msg: str, extra: dict[str, Any] | None = None, exc_info: bool = False) -> bool:
        """True when this event got a line of its own."""
        now = self._time()
        if now < self._quiet_until:
            self._untold += 1
            return False
        self.logger.log(self.level, msg, extra={**(extra or {}), "untold": self._untold}, exc_info=exc_info)
        self._untold = 0
        self._quiet_until = now + self.quiet_s
        return True
