"""`python -m services.card`: the card service on MIANDAN_CARD_PORT (default 50051).

Card-specific knobs (optional): MIANDAN_CARD_SWEEP_SECONDS (5) — how often lapsed holds and
expired cards are swept; MIANDAN_CARD_NEW_USER_WINDOW_SECONDS (600) — how long after its sign-up
grant a user still counts as new for AcceptInvite; MIANDAN_CARD_GAUGE_SECONDS (15) — how often the
campaign gauges (budget, issued, face value by card state) are refreshed for Prometheus.
"""
from __future__ import annotations

from typing import Any, Mapping

from services.common.config import env_number
from services.common.server import main

from .wiring import build

DAY_S = 86_400.0


def options_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """build()'s keyword arguments from the card's own variables; ValueError naming the variable
    (inf and nan included: the window becomes integer milliseconds, an interval a timer)."""
    # At least a millisecond: the window is kept in whole ms, and 0.0001 s made it 0 (no
    # invitee would ever count as new).
    window_s = env_number(env, "MIANDAN_CARD_NEW_USER_WINDOW_SECONDS", 600.0, minimum=0.001, maximum=365 * DAY_S)
    return {
        "sweep_interval_s": env_number(env, "MIANDAN_CARD_SWEEP_SECONDS", 5.0, above=0, maximum=DAY_S),
        "gauge_interval_s": env_number(env, "MIANDAN_CARD_GAUGE_SECONDS", 15.0, above=0, maximum=DAY_S),
        "new_user_window_ms": int(window_s * 1000),
    }


if __name__ == "__main__":
    main("card", build, options=options_from_env)
