"""`python -m services.card`: the card service on MIANDAN_CARD_PORT (default 50051).

Card-specific knobs (optional): MIANDAN_CARD_SWEEP_SECONDS (5) — how often lapsed holds and
expired cards are swept; MIANDAN_CARD_NEW_USER_WINDOW_SECONDS (600) — how long after its sign-up
grant a user still counts as new for AcceptInvite; MIANDAN_CARD_GAUGE_SECONDS (15) — how often the
campaign gauges (budget, issued, face value by card state) are refreshed for Prometheus.
"""
import os
import sys

from services.common.config import Settings
from services.common.server import run, serve_built

from .wiring import build


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r} is not a number of seconds")
    if not value > 0:
        sys.exit(f"{name}={raw!r} must be > 0")
    return value


if __name__ == "__main__":
    sweep_s = _seconds("MIANDAN_CARD_SWEEP_SECONDS", 5.0)
    window_ms = int(_seconds("MIANDAN_CARD_NEW_USER_WINDOW_SECONDS", 600.0) * 1000)
    gauge_s = _seconds("MIANDAN_CARD_GAUGE_SECONDS", 15.0)

    async def build_card(settings: Settings):  # type: ignore[no-untyped-def]
        return await build(settings, sweep_interval_s=sweep_s, gauge_interval_s=gauge_s, new_user_window_ms=window_ms)

    run(serve_built(build_card, Settings.from_env("card")))
