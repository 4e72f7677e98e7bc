"""An operator learns the knobs from docs/conventions.md: every MIANDAN_* variable the code reads
is named there (or in the README)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"MIANDAN_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{*<])")  # not a prefix such as MIANDAN_LOTTERY_*


def _names_in(paths) -> set[str]:
    return {m for p in paths for m in NAME.findall(p.read_text(encoding="utf-8"))}


def test_every_variable_the_services_read_is_documented():
    code = _names_in(p for d in ("services", "gateway", "scripts") for p in (ROOT / d).rglob("*.py"))
    documented = _names_in([ROOT / "docs" / "conventions.md", ROOT / "README.md"])
    assert "MIANDAN_HOST" in code and "MIANDAN_ALLOW_DEV_SECRETS" in code  # the scan sees the settings
    assert sorted(code - documented) == []


def _documented_default(doc: str, var: str) -> float | None:
    """The first "default N" said of `var`: after a mention of it and before the next variable
    named, so a default is never read off its neighbour."""
    for mention in re.finditer(f"`{re.escape(var)}`", doc):
        until = re.compile(r"`MIANDAN_").search(doc, mention.end())
        said = re.search(r"default (\d[\d,]*(?:\.\d+)?)", doc[mention.end(): until.start() if until else None])
        if said:
            return float(said.group(1).replace(",", ""))
    return None


def _defaults_in_code() -> dict[str, float]:
    from gateway.wiring import options_from_env as gateway_options
    from services.card.__main__ import options_from_env as card_options
    from services.common.config import Settings
    from services.common.server import keepalive_from_env
    from services.lottery.wiring import draw_settings_from_env
    from services.order.wiring import config_from_env

    s, card, order = Settings.from_env("gateway", {}), card_options({}), config_from_env({})
    idle, answer = keepalive_from_env({})
    return {
        "MIANDAN_GRACE_SECONDS": s.grace_seconds, "MIANDAN_KEEPALIVE_SECONDS": idle,
        "MIANDAN_KEEPALIVE_TIMEOUT_SECONDS": answer, "MIANDAN_MAX_CONCURRENCY": s.max_concurrency,
        "MIANDAN_MIN_CONCURRENCY": s.min_concurrency, "MIANDAN_MAX_WAIT_MS": s.max_wait_ms,
        "MIANDAN_TARGET_LATENCY_MS": s.target_latency_ms, "MIANDAN_MAX_LOOP_LAG_MS": s.max_loop_lag_ms,
        "MIANDAN_MAX_PENDING_CALLS": s.max_pending_calls, "MIANDAN_WATCHES_PER_USER": s.watches_per_user,
        "MIANDAN_MAX_WATCHES": s.max_watches, "MIANDAN_USER_RATE": s.user_rate, "MIANDAN_USER_BURST": s.user_burst,
        "MIANDAN_USER_RATE_TRACKED": s.user_rates_tracked, "MIANDAN_MERCHANT_RATE": s.merchant_rate,
        "MIANDAN_MERCHANT_BURST": s.merchant_burst, "MIANDAN_MERCHANT_RATE_TRACKED": s.merchant_rates_tracked,
        "MIANDAN_UPSTREAM_SHARE_PERCENT": s.upstream_share_percent, "MIANDAN_UPSTREAM_STALL_MS": s.upstream_stall_ms,
        "MIANDAN_JWT_MAX_LIFETIME_S": s.jwt_max_lifetime_s / 86_400,  # said in days
        "MIANDAN_CARD_SWEEP_SECONDS": card["sweep_interval_s"],
        "MIANDAN_CARD_NEW_USER_WINDOW_SECONDS": card["new_user_window_ms"] / 1000,
        "MIANDAN_CARD_GAUGE_SECONDS": card["gauge_interval_s"], "MIANDAN_PAYMENT_TTL_SECONDS": order.payment_ttl_seconds,
        "MIANDAN_ORDER_SWEEP_SECONDS": order.sweep_interval_seconds,
        "MIANDAN_ORDER_PLACING_GRACE_SECONDS": order.placing_grace_seconds,
        "MIANDAN_LOTTERY_TICK_SECONDS": draw_settings_from_env({}).tick_seconds,
        "MIANDAN_PREVIEW_TTL_SECONDS": gateway_options({})["preview_ttl_s"],
    }


def test_every_numeric_knob_is_documented_with_the_default_the_code_uses():
    doc = (ROOT / "docs" / "conventions.md").read_text(encoding="utf-8")
    wrong = {
        var: (code, _documented_default(doc, var))
        for var, code in _defaults_in_code().items()
        if _documented_default(doc, var) != code
    }
    assert wrong == {}, "variable: (default in code, default in docs/conventions.md)"
